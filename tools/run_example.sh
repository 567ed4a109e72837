#!/usr/bin/env bash
# Set up (idempotently) and generate the small default ensemble (examples/phi4_2d.toml: 16x16
# phi^4, HMC) on 2 MPI ranks; prints progress and a table of results.
# Usage: bash tools/run_example.sh [RUN.toml] [RANKS]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_file=$(realpath "${1:-$repo/examples/phi4_2d.toml}")
ranks=${2:-2}
bash "$repo/tools/setup.sh"
# shellcheck disable=SC1091
source "${LQCDFLOW_VENV:-$HOME/.venvs/lqcdflow}/bin/activate"
timeout 3600 mpiexec -n "$ranks" lqcdflow run "$run_file"
