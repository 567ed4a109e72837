#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: serially, and the mpi-marked tests under
# mpiexec with 2 and 4 ranks. Every run is bounded by a timeout so that a deadlock fails instead
# of hanging.
# Usage: bash tools/test.sh [extra pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/setup.sh"
# shellcheck disable=SC1091
source "${LQCDFLOW_VENV:-$HOME/.venvs/lqcdflow}/bin/activate"
cd "$repo"
export PYTHONHASHSEED=0 OMP_NUM_THREADS=1

# One pytest run: every test and doctest serially, and (tests/test_mpi_ranks.py) the tests
# marked mpi again under mpiexec -n 2 and -n 4, each bounded by a timeout.
echo "== all tests and doctests; mpi-marked ones also under mpiexec -n 2 and -n 4"
timeout 2400 python -m pytest -q -rs -p no:cacheprovider --doctest-modules lqcdflow tests "$@"
echo "== shellcheck"
shellcheck -x tools/*.sh .ci/run lqcdflow/jobs/common.sh jobs/slurm/lqcdflow.sbatch jobs/pbs/lqcdflow.pbs
