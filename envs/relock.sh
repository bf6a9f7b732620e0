#!/usr/bin/env bash
# Re-resolve the pinned dependency set and prove it: envs/lock.txt (every runtime and test
# dependency, exact versions, resolved together from pyproject.toml + envs/pins.txt), then the
# conda env files from it, then a fresh venv installed from the lock and the test suite run in it.
#
#   envs/relock.sh             keep current versions where still allowed (adds/removes only)
#   envs/relock.sh --upgrade   newest versions pyproject.toml and envs/pins.txt allow
#   envs/relock.sh --no-test   resolve and write files only
#
# Commit envs/lock.txt and envs/*.yaml only when the suite passed.
set -euo pipefail
cd "$(dirname "$0")/.."
upgrade=(); run_tests=1
for a in "$@"; do
    case "$a" in
        --upgrade) upgrade=(--upgrade) ;;
        --no-test) run_tests=0 ;;
        *) echo "usage: envs/relock.sh [--upgrade] [--no-test]" >&2; exit 2 ;;
    esac
done
command -v uv >/dev/null || python3 -m pip install -q uv
# One resolution for Linux x86_64, Python 3.11 (the project's floor and CI's Python). CUDA wheels
# that PyPI's torch pulls on Linux are in it; the CPU build of torch simply does not ask for them.
compile=(uv pip compile --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet)
"${compile[@]}" "${upgrade[@]}" pyproject.toml --extra test --extra slurm -c envs/pins.txt -o envs/lock.txt
python3 envs/write_conda_envs.py
if [ "$run_tests" = 1 ]; then
    venv=$(mktemp -d)/venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch=="$(sed -n 's/^torch==//p' envs/lock.txt)"
    "$venv/bin/pip" install -q -c envs/lock.txt -e ".[test]"
    OMP_NUM_THREADS=1 "$venv/bin/python" -m pytest -q -n 2
fi
