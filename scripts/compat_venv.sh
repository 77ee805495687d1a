#!/usr/bin/env bash
# The compat lane's venv: the project on the Spark EMR Serverless runs (emr-spark-8.0.0: Spark 4.0.2),
# beside the pinned one (.venv, Spark 4.1.4). Every runtime pin of pyproject.toml is kept except
# pyspark, which becomes the newest 4.0 patch; of the dev tools only what the job tests import.
# delta-spark 4.4.0's wheel accepts pyspark >= 4.0.1, great-expectations[spark] 1.24.1 accepts 4.0.x:
# uv resolves the whole set here, so a pin that stops fitting fails this script, not a test.
#
# Usage: scripts/compat_venv.sh [VENV]   (default .venv-compat; COMPAT_PYSPARK picks the version)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-compat}"
pyspark="${COMPAT_PYSPARK:-4.0.5}"
python="${PYTHON:-python3.11}"
stamp="$venv/.installed"
want="pyspark==$pyspark $(sha256sum pyproject.toml scripts/compat_venv.sh | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "compat venv: up to date in $venv (pyspark $pyspark)"
  exit 0
fi
test -x "$venv/bin/python" || "$python" -m venv "$venv"
reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
"$venv/bin/python" - "$pyspark" >"$reqs" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted_dev = {"pytest", "chispa"}  # what the compat lane's tests import
for req in project["dependencies"]:
    name = re.split(r"[\[=<>!~ ]", req, maxsplit=1)[0].lower()
    print(f"pyspark=={sys.argv[1]}" if name == "pyspark" else req)
for req in project["optional-dependencies"]["dev"]:
    if re.split(r"[\[=<>!~ ]", req, maxsplit=1)[0].lower() in wanted_dev:
        print(req)
EOF
echo "compat venv: installing into $venv (pyspark $pyspark; the pyspark sdist is ~430 MB, first time only)"
"$venv/bin/python" -m pip install -q "uv==${UV_VERSION:-0.13.10}"
uv=("$venv/bin/uv" pip install -q --python "$venv/bin/python")
"${uv[@]}" -r "$reqs"
# The project itself without its pins (they would bring pyspark 4.1 back); its imports are satisfied above.
"${uv[@]}" --no-deps -e .
# Every requirement met, except the project's own pyspark pin (replaced on purpose above).
if "$venv/bin/python" -m pip check | grep -v "^ecomkpi .* requirement pyspark==" | grep .; then
  echo "compat venv: the set above does not install together" >&2
  exit 1
fi
"$venv/bin/python" -c 'import pyspark, delta, great_expectations as gx; print("compat venv: pyspark", pyspark.__version__, "great_expectations", gx.__version__)'
echo "$want" >"$stamp"
