#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: serially, then under mpiexec with 2 and
# 4 ranks. Every run is bounded by a timeout so that a deadlock fails instead of hanging.
# Usage: bash tools/test.sh [extra pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/setup.sh"
# shellcheck disable=SC1091
source "${LQCDFLOW_VENV:-$HOME/.venvs/lqcdflow}/bin/activate"
cd "$repo"
export PYTHONHASHSEED=0 OMP_NUM_THREADS=1

echo "== serial: all tests and doctests"
timeout 1500 python -m pytest -q -rs --with-mpi -p no:cacheprovider --doctest-modules lqcdflow tests "$@"
for ranks in 2 4; do
    echo "== mpiexec -n $ranks: tests marked mpi"
    timeout 900 mpiexec -n "$ranks" python -m pytest -q -rs --with-mpi -m mpi -p no:cacheprovider \
        tests "$@"
done
echo "== shellcheck"
shellcheck -x tools/*.sh .ci/run jobs/common.sh jobs/slurm/lqcdflow.sbatch jobs/pbs/lqcdflow.pbs
