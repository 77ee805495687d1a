# Two commands do everything on a fresh clone: `make run` and `make test`.
# Both create .venv/, fetch the Spark jars (into ~/.cache/ecomkpi/jars) and build the JVM's class
# archive for them (~/.cache/ecomkpi/cds, hosts/jvm_archive.py) when missing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYTHONUNBUFFERED := 1

.PHONY: setup jars archive browser image run serve test test-fast compat lint fmt notebook bench deploy clean

setup: $(STAMP) jars archive

# uv installs the project into the venv (cold: ~45 s against pip's ~165 s, most of it building pyspark's
# sdist; measured 2026-12-07), itself installed there by pip, so a fresh machine needs only Python.
UV_VERSION := 0.13.10
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	@touch $@

jars:
	@scripts/fetch_jars.sh

# The driver's classes pre-parsed for the JVMs the project starts (~1 min once per jar set; a failed
# build only means slower starts, so it never fails setup).
archive: $(STAMP) jars
	@$(BIN)/python -m hosts.jvm_archive

# Debian's headless Chromium + driver for the live-page tests (installed only when missing, as root).
browser:
	@scripts/install_browser.sh

# The pipeline image (docker/Dockerfile) with podman/buildah from Debian, its base made by mmdebstrap
# where no registry is reachable (scripts/build_image.sh): ~15 min the first time, seconds when cached.
image:
	@scripts/build_image.sh

run: setup
	$(BIN)/ecomkpi demo $(ARGS)

# The KPI API and live page for a stack that runs elsewhere (tables and endpoint from the environment).
serve: setup
	$(BIN)/ecomkpi serve $(ARGS)

# ruff, the notebooks' stripped outputs, and mypy (strict on every package; pyproject.toml [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_notebooks.py
	$(BIN)/python scripts/house.py >/dev/null
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The JVM tests on the shared session, the tests with JVMs of their own and the tests without a JVM
# as three pytest processes at once (scripts/test_in_lanes.sh). The shared-session lane is the longest,
# so it starts at once; the browser is installed at the head of the lane without a JVM, and lint runs
# beside that lane (LANE_BESIDE: ~100 CPU-s, while those tests mostly wait). The container
# tests build the image themselves, last in their lane (tests/docker/test_container_pipeline.py). The class
# archive is not built here: on two cores its warm-up JVM cost ~250 CPU-s (2-5 min of a clean-clone
# run) for ~3 s off each of a dozen JVM starts; `make setup` builds it, and the image carries its own,
# which the container tests use.
# PYTEST_SERIAL=1: the set-up steps, then one pytest process, one test after the other.
test: $(STAMP) jars
ifeq ($(PYTEST_SERIAL),1)
	@$(MAKE) --no-print-directory -j2 --output-sync=target browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
else
	NO_JVM_FIRST="$(MAKE) --no-print-directory browser" LANE_BESIDE="$(MAKE) --no-print-directory lint" \
	scripts/test_in_lanes.sh $(BIN)/python $(PYTEST_ARGS)
endif

# Every test that needs no JVM and is not marked slow (~2 minutes): the loop before a small change.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not spark and not slow" $(PYTEST_ARGS)

# The compat lane: the job tests (KPIs, validation, transformation) and a day through the local stack in
# emr-serverless mode, on Spark 4.0 (the Spark of EMR Serverless's emr-spark-8.0.0) with Delta 4.4.0's
# Spark 4.0 build: its own venv (.venv-compat, scripts/compat_venv.sh) and jar cache
# (~/.cache/ecomkpi/jars-spark4.0, scripts/spark40-jars.pom.xml). Sets itself up on a fresh clone.
COMPAT_VENV := .venv-compat
COMPAT_JARS ?= $(HOME)/.cache/ecomkpi/jars-spark4.0
# The default selection (~5 min of pytest on 2 cores; not in CI for time: docs/development.md). The whole of the three job test files was run for the change
# that added the lane (docs/scale-out.md): make compat COMPAT_TESTS="tests/compat tests/jobs/test_kpis.py
# tests/jobs/validation/test_validation_job.py tests/jobs/transformation/test_transformation_batches.py".
COMPAT_TESTS ?= tests/compat tests/jobs/test_kpis.py::test_daily_and_category_kpis_hand_computed \
  tests/jobs/validation/test_validation_job.py \
  --deselect tests/jobs/validation/test_validation_job.py::test_files_checked_two_at_a_time_end_as_they_do_one_after_the_other
compat:
	@scripts/compat_venv.sh $(COMPAT_VENV)
	@scripts/fetch_jars.sh $(COMPAT_JARS) scripts/spark40-jars.pom.xml
	ECOMKPI_JARS_DIR=$(COMPAT_JARS) ECOMKPI_COMPAT_JARS_DIR=$(COMPAT_JARS) SPARK_CLASS_ARCHIVE=off \
	  $(COMPAT_VENV)/bin/python -m pytest -p no:cacheprovider $(COMPAT_TESTS) $(PYTEST_ARGS)

# The notebooks' `python3` kernel is this venv's interpreter (jupyter runs it as sys.executable), so
# the project, Spark and Delta import and get_spark() finds the jar cache; `ecomkpi` is the same
# kernel under a named entry. Jupyter refuses to start as root (containers) without --allow-root.
notebook: setup
	$(BIN)/python -m ipykernel install --sys-prefix --name ecomkpi --display-name "ecomkpi (Spark + Delta)" >/dev/null
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

bench: setup
	$(BIN)/python -m bench $(ARGS)

deploy: setup
	scripts/deploy.sh

clean:
	rm -rf out .pytest_cache .ruff_cache spark-warehouse metastore_db derby.log
