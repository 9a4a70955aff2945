#!/usr/bin/env bash
# Mutation score of one module against its fast tests (mutmut), run in a throw-away copy.
#
#   benchmarks/mutation.sh src/napari_medvision/core/volume.py tests/core/test_volume.py ...
#
# Prints mutmut's per-mutant results and one line "killed K of N (P%)"; survivors can be read
# with `cd <copy> && python -m mutmut show NAME`. MUTATION_MINUTES (default 15) caps the run.
set -euo pipefail
module=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
work=$(mktemp -d "${TMPDIR:-/tmp}/medvision-mutation.XXXXXX")
cp -r "$root/src" "$root/tests" "$root/pyproject.toml" "$work/"
tests=$(printf '"%s", ' "$@")
cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = ["src"]
only_mutate = ["$module"]
pytest_add_cli_args_test_selection = [${tests%, }]
pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
process_isolation = "${MUTATION_ISOLATION:-forkserver}"  # fork is faster; forkserver when torch hangs forked children
timeout_multiplier = ${MUTATION_TIMEOUT_MULTIPLIER:-15.0}  # raise on a busy machine
TOML
cd "$work"
echo "mutating $module in $work" >&2
nice -n 10 timeout "${MUTATION_MINUTES:-15}m" "$python" -m mutmut run --max-children "${MUTATION_CHILDREN:-1}" \
    >"$work/run.log" 2>&1 || echo "mutmut run ended with status $? (124: time limit)" >&2
"$python" -m mutmut results --all true >"$work/results.txt" 2>/dev/null || "$python" -m mutmut results >"$work/results.txt"
total=$(grep -c ': ' "$work/results.txt" || true)
killed=$(grep -c ': killed' "$work/results.txt" || true)
cat "$work/results.txt"
echo "$module: killed $killed of $total mutants ($(( total ? 100 * killed / total : 0 ))%)  [copy: $work]"
