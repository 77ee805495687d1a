#!/usr/bin/env bash
# The whole suite as three pytest processes at once:
#   1. the JVM tests on the shared SparkSession (the demo's too), one after the other, in the foreground;
#      the longest lane, so it starts at once;
#   2. the tests whose JVMs are their own processes (worker processes, notebook kernels, spark-submit,
#      a standalone cluster, containers: marker `own_jvms`), niced a little, after OWN_JVMS_FIRST if set;
#   3. the ~800 tests without a JVM, niced more, after NO_JVM_FIRST (`make test`: the browser);
#   and LANE_BESIDE, if set, a command run beside them from the start at the same niceness (`make test`:
#   lint). Lint is ~100 CPU-s, the tests without a JVM mostly wait: at the head of their lane it kept
#   them waiting, 678 s of its 1,763 s in a clean-clone rehearsal (2026-12-07), longer than the
#   shared-session lane.
# Lanes 2 and 3 write to logs printed when the first ends. The suite is mostly waiting (moto calls,
# polls, process starts, Py4J round trips): `time` counted 13 CPU-minutes in a 28.7-minute CI run on
# two cores, so the lanes overlap that waiting instead of queueing behind it: a clean-clone CI run
# took 25.0 min (lanes 1,197 / 837 / 961 s) against 28.7 min with lanes 1+2 as one. Tests that wait
# for another thread's work give it a minute, not seconds: lane 3 gets little CPU while 1 and 2 run.
#
# Not pytest-xdist: its --dist loadgroup, which would keep the JVM tests in one worker, renames test
# ids through a private attribute that pytest 9 no longer reads, so the groups are silently ignored.
#
# usage: scripts/test_in_lanes.sh <python> [pytest args...]
set -uo pipefail
python=$1
shift
own_log=$(mktemp "${TMPDIR:-/tmp}/ecomkpi-tests-ownjvms.XXXXXX")
beside_log=$(mktemp "${TMPDIR:-/tmp}/ecomkpi-tests-beside.XXXXXX")
nojvm_log=$(mktemp "${TMPDIR:-/tmp}/ecomkpi-tests-nojvm.XXXXXX")
after_log=$(mktemp "${TMPDIR:-/tmp}/ecomkpi-tests-after.XXXXXX")
trap 'rm -f "$own_log" "$nojvm_log" "$after_log" "$beside_log"' EXIT
# Each lane also lists its tests by the CPU their process trees used (tests/support/cpu_time.py): the
# two cores are busy for the whole run, so CPU, not wall time, is what a test costs the suite.
cpu="-p tests.support.cpu_time"

# lane <niceness> <first command> <pytest args...>: the command (a set-up step: `make test` lints
# before the tests without a JVM), then pytest, each timed. Its exit code: the set-up step's if that
# failed (the tests still run), else pytest's.
lane() {
  local niceness=$1 first=$2 first_rc=0 rc started=$SECONDS
  shift 2
  if [ -n "$first" ]; then
    nice -n "$niceness" bash -c "$first"
    first_rc=$?
    echo "set-up step done in $((SECONDS - started)) s (exit $first_rc): $first"
  fi
  nice -n "$niceness" "$python" -m pytest "$@"
  rc=$?
  echo "lane done $((SECONDS - started)) s after it started"
  if [ "$first_rc" -ne 0 ]; then
    echo "set-up step failed (exit $first_rc): $first"
    return "$first_rc"
  fi
  return "$rc"
}

lane 5 "${OWN_JVMS_FIRST:-}" -m "own_jvms" -p no:cacheprovider $cpu "$@" >"$own_log" 2>&1 &
own=$!
lane 15 "${NO_JVM_FIRST:-}" -m "not spark" -p no:cacheprovider $cpu "$@" >"$nojvm_log" 2>&1 &
nojvm=$!
beside=""
if [ -n "${LANE_BESIDE:-}" ]; then
  (
    started=$SECONDS
    nice -n 15 bash -c "$LANE_BESIDE"
    rc=$?
    echo "done in $((SECONDS - started)) s (exit $rc)"
    exit "$rc"
  ) >"$beside_log" 2>&1 &
  beside=$!
fi
echo "tests with JVMs of their own (pid $own) and without a JVM (pid $nojvm)${beside:+, $LANE_BESIDE (pid $beside)}: running beside, output follows"

# LANES_AFTER: a command run once the first of those two lanes is done, beside the others (CI runs
# `make compat` there: its JVM takes the place of the finished lane's instead of queueing after all).
after=""
if [ -n "${LANES_AFTER:-}" ]; then
  (
    # running: not gone and not a zombie (a finished lane stays one until this script waits for it)
    running() { [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != "" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }
    while running "$own" && running "$nojvm"; do sleep 5; done
    nice -n 5 bash -c "$LANES_AFTER"
  ) >"$after_log" 2>&1 &
  after=$!
fi

started=$SECONDS
"$python" -m pytest -m "spark and not own_jvms" $cpu "$@"
shared_rc=$?
echo "shared-session lane done in $((SECONDS - started)) s"

wait "$own"
own_rc=$?
wait "$nojvm"
nojvm_rc=$?
echo
echo "================ tests with JVMs of their own (ran beside the shared-session tests) ================"
cat "$own_log"
echo
echo "====================== tests without a JVM (ran beside the shared-session tests) ======================"
cat "$nojvm_log"
beside_rc=0
if [ -n "$beside" ]; then
  wait "$beside"
  beside_rc=$?
  echo
  echo "====================== $LANE_BESIDE (ran beside the tests) ======================"
  cat "$beside_log"
fi
after_rc=0
if [ -n "$after" ]; then
  wait "$after"
  after_rc=$?
  echo
  echo "====================== $LANES_AFTER (ran once a lane was done) ======================"
  cat "$after_log"
fi
echo "exit codes: shared-session tests $shared_rc, own-JVM tests $own_rc, tests without a JVM $nojvm_rc${beside:+, $LANE_BESIDE $beside_rc}${after:+, $LANES_AFTER $after_rc}"
if [ "$after_rc" -ne 0 ]; then exit "$after_rc"; fi
if [ "$beside_rc" -ne 0 ]; then exit "$beside_rc"; fi
# 5 is pytest's "no tests collected": arguments that select only some kinds of test leave the other
# processes nothing to run, which fails nothing. All of them collecting nothing is still 5.
if [ "$shared_rc" -eq 5 ] && [ "$own_rc" -eq 5 ] && [ "$nojvm_rc" -eq 5 ]; then exit 5; fi
for rc in "$shared_rc" "$own_rc" "$nojvm_rc"; do
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
done
exit 0
