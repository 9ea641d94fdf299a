#!/usr/bin/env bash
# The Ray tests (pytest -m ray), in a pytest process of their own, as `make test` runs them.
#
# Ray's own task-state race (ray-project/ray#54846) can kill a driver process without a summary,
# so a failed first run is run once more; but never silently: the first run's failure is
# printed and counted (its summary line, or that it died without one) before the rerun, and
# again after a rerun that passed, so a flaky failure shows in every log.
# Usage: scripts/ray-tests.sh [PYTHON] [pytest args...]   (exit status: the last run's)
set -uo pipefail
PY=${1:-.venv/bin/python}
shift || true
log=$(mktemp)
trap 'rm -f "$log"' EXIT

"$PY" -m pytest -q -m ray "$@" 2>&1 | tee "$log"
first=${PIPESTATUS[0]}
if [ "$first" -eq 0 ]; then
  exit 0
fi
summary=$(grep -E '^=* *[0-9]+ (passed|failed|errors?|skipped|deselected)' "$log" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
failed=$(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | awk '{n += $1} END {print n + 0}')
first_run="first run failed (${failed} failed; exit ${first}; summary: ${summary:-none, the process died})"
echo "Ray tests: ${first_run}, rerunning"
"$PY" -m pytest -q -m ray "$@"
second=$?
if [ "$second" -eq 0 ]; then
  echo "Ray tests: FLAKY: the ${first_run}; the rerun passed"
else
  echo "Ray tests: the ${first_run}; the rerun failed too (exit ${second})"
fi
exit "$second"
