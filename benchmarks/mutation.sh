#!/usr/bin/env bash
# Mutation testing of skggda's numerics with mutmut (part of the `test` extra).
#
# Not run by CI: a module takes minutes to an hour on two cores. Each
# mutant (an operator flipped, a constant changed, an argument dropped...)
# is run against the fast tests that call the mutated function; a mutant no
# test kills ("survived") is a change of the code that the suite cannot see.
# Results and the survivors of the last full run: benchmarks/TESTING.md.
#
# Usage (from anywhere in the checkout):
#
#     benchmarks/mutation.sh                                # the seven modules below
#     benchmarks/mutation.sh skggda/_engine/_projection.py  # one module (or several)
#     MUTATION_TESTS="tests/test_x.py" benchmarks/mutation.sh skggda/other.py
#
# Environment:
#   MUTATION_TESTS  test files (or node ids) to run instead of the module's own map below
#   MUTATION_OUT    work folder (default benchmarks/out/mutation, ignored by git)
#   MUTATION_JOBS   mutants run at once (default 1: the machine is shared)
#   MUTATION_RESUME 1 keeps the work folder of an interrupted run and goes on from it
#
# Each module is run in its own copy of the working tree
# ($MUTATION_OUT/<module>/, mutmut's `mutants/` inside it), so the checkout
# is never touched and other people's edits during the run do not leak in.
# Per module it writes results.txt (every mutant and its status) and
# survivors.txt (the diff of every mutant that survived); then, in that
# folder, `mutmut show <name>` prints one mutant and
# `mutmut run <name>` reruns it after a test was added to the copy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${MUTATION_OUT:-$ROOT/benchmarks/out/mutation}
JOBS=${MUTATION_JOBS:-1}

ALL_MODULES=(
    skggda/_engine/_projection.py
    skggda/_engine/_assign.py
    skggda/_engine/_plan.py
    skggda/attribution/_tracin.py
    skggda/attribution/_influence.py
    skggda/models/_callbacks.py
    skggda/metrics/_noisy_labels.py
)

# The fast test files that exercise each module (found by grepping tests/ for
# the module's functions and the attributors built on them). mutmut runs,
# per mutant, only the tests among these that call the mutated function.
tests_for() {
    case "$1" in
        skggda/_engine/_projection.py)
            echo "tests/test_engine.py tests/test_engine_paths.py tests/test_tracin.py
                  tests/test_self_influence.py tests/test_influence.py
                  tests/test_sklearn_models.py" ;;
        skggda/_engine/_assign.py)
            echo "tests/test_kmeans.py tests/test_kmeans_groupers.py tests/test_scoring_state.py" ;;
        skggda/_engine/_plan.py)
            echo "tests/test_engine.py tests/test_engine_paths.py tests/test_tracin.py
                  tests/test_influence.py tests/test_kfac.py tests/test_pass_counts.py" ;;
        skggda/attribution/_tracin.py)
            echo "tests/test_tracin.py tests/test_self_influence.py tests/test_pass_counts.py
                  tests/test_group_store.py tests/test_scoring_state.py
                  skggda/attribution/_tracin.py" ;;
        skggda/attribution/_influence.py)
            echo "tests/test_influence.py tests/test_self_influence.py tests/test_kfac.py
                  tests/test_pass_counts.py tests/test_group_store.py tests/test_sklearn_models.py
                  tests/test_scoring_state.py skggda/attribution/_influence.py" ;;
        skggda/models/_callbacks.py)
            echo "tests/test_models.py tests/test_tracin.py tests/test_self_influence.py
                  tests/test_faults.py skggda/models/_callbacks.py" ;;
        skggda/metrics/_noisy_labels.py)  # of test_evaluation, the noisy-label tests only
            echo "tests/test_metrics.py tests/test_regression_metrics.py
                  tests/test_evaluation.py::test_noisy_grid_has_a_cleanlab_row_with_its_cost
                  tests/test_evaluation.py::test_noisy_detectors_rank_by_their_own_scores
                  tests/test_evaluation.py::test_self_detector_ranks_groups_by_their_mean_gradient
                  tests/test_evaluation.py::test_self_detector_finds_flipped_labels_in_grad_kmeans_groups
                  skggda/metrics/_noisy_labels.py" ;;
        *)
            return 1 ;;
    esac
}

if [ "$#" -eq 0 ]; then
    set -- "${ALL_MODULES[@]}"
fi

# one thread per test process: the machine is shared, and forked workers
# must not inherit a busy OpenMP pool
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

summary=()
for module in "$@"; do
    module=${module#./}
    module=${module#"$ROOT/"}
    if [ ! -f "$ROOT/$module" ]; then
        echo "mutation.sh: no such file: $module" >&2
        exit 2
    fi
    if [ -n "${MUTATION_TESTS:-}" ]; then
        tests=$MUTATION_TESTS
    elif ! tests=$(tests_for "$module"); then
        echo "mutation.sh: no test map for $module; set MUTATION_TESTS=\"tests/test_....py ...\"" >&2
        exit 2
    fi

    name=$(basename "$(dirname "$module")")_$(basename "$module" .py)
    work=$OUT/$name
    if [ "${MUTATION_RESUME:-0}" != 1 ]; then
        rm -rf "$work"
    fi
    mkdir -p "$work"
    if [ ! -d "$work/skggda" ]; then
        # the working tree as it is (uncommitted edits included), without caches
        (cd "$ROOT" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' skggda tests pyproject.toml) \
            | tar -xf - -C "$work"
    fi

    {
        echo "[mutmut]"
        echo "source_paths = skggda"
        echo "only_mutate = $module"
        # fast tests only, stop at the first failure, leave no cache behind
        printf 'pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -m\n    not slow\n'
        printf '    -k\n    not dask\n'
        echo "pytest_add_cli_args_test_selection ="
        for t in $tests; do echo "    $t"; done
    } > "$work/setup.cfg"
    # mutmut skips decorated functions (the public metrics are all wrapped by
    # scikit-learn's validate_params): in the copy, `@deco def f` becomes
    # `def f` followed by `f = deco(f)`, the same function, which mutmut mutates
    python - "$work/$module" <<'EOF'
import ast, sys
path = sys.argv[1]
source = open(path).read()
lines = source.splitlines(keepends=True)
tree = ast.parse(source)
for node in reversed(tree.body):  # bottom up: the line numbers above stay valid
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.decorator_list:
        continue
    wrapped = node.name
    for decorator in reversed(node.decorator_list):  # the innermost applies first
        wrapped = f"({ast.get_source_segment(source, decorator)})({wrapped})"
    lines[node.end_lineno:node.end_lineno] = [f"{node.name} = {wrapped}\n"]
    del lines[min(d.lineno for d in node.decorator_list) - 1:node.lineno - 1]
open(path, "w").write("".join(lines))
EOF
    # mutmut reads [tool.mutmut] from pyproject.toml before setup.cfg: drop it from the copy
    python - "$work/pyproject.toml" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
open(path, "w").write(text)
EOF

    echo "== $module: tests $(echo $tests) (work folder $work)"
    start=$(date +%s)
    (cd "$work" && python -m mutmut run --max-children "$JOBS") > "$work/run.log" 2>&1 || {
        echo "mutation.sh: mutmut failed for $module, see $work/run.log" >&2
        tail -30 "$work/run.log" >&2
        exit 1
    }
    seconds=$(( $(date +%s) - start ))
    (cd "$work" && python -m mutmut results --all true) > "$work/results.txt"
    : > "$work/survivors.txt"
    for mutant in $(awk -F': ' '/: (survived|no tests|suspicious|not checked)$/ {print $1}' "$work/results.txt"); do
        (cd "$work" && python -m mutmut show "$mutant") >> "$work/survivors.txt" 2>&1
        echo >> "$work/survivors.txt"
    done
    counts=$(awk -F': ' 'NF > 1 {n[$NF]++} END {for (s in n) printf "%s %d, ", s, n[s]}' "$work/results.txt")
    line="$module: ${counts%, } (${seconds}s)"
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (results.txt and survivors.txt per module under $OUT)"
printf '%s\n' "${summary[@]}"
