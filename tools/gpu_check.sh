#!/bin/bash
# The GPU checks, in one go, for a session that is lent a device (never run yet; its timeouts
# add up to 560 s, inside one device command's 600): the CuPy tests (tests/test_gpu.py: the
# array path and the CUDA kernels against the array path, also under mpiexec -n 2 where there
# is one) and the MD benchmarks of the CUDA kernels against the device's copy bandwidth
# (phi^4 64^4 in float64 and float32, U(1) and SU(3) 32^4). Every result goes to OUT (default
# $OUT, else /tmp/gpu_check).
#
# Usage, in the repository root of the device machine (its image has CuPy, mpi4py, numba,
# h5py, pytest; nothing is installed here):  bash tools/gpu_check.sh [OUT]
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONHASHSEED=0 OMP_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
"$python" -c "import cupy, numba, mpi4py; print('cupy', cupy.__version__, 'numba',
    numba.__version__, 'mpi4py', mpi4py.__version__)" 2>&1 | tee -a "$out/gpu.txt"

timeout 240 "$python" -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py 2>&1 |
    tee "$out/tests.txt"
if command -v mpiexec >/dev/null; then
    timeout 120 mpiexec -n 2 "$python" -m pytest -q -p no:cacheprovider -m mpi \
        tests/test_gpu.py 2>&1 | tee "$out/tests_2_ranks.txt"
fi

# theory, extents, dtype, MD steps per timed trajectory (SU(3)'s array path is slow)
for run in "phi4 64 64 64 64 float64 10" "phi4 64 64 64 64 float32 10" \
           "u1 32 32 32 32 float64 10" "su3 32 32 32 32 float64 2"; do
    read -r theory l0 l1 l2 l3 dtype steps <<<"$run"
    timeout 50 "$python" tools/bench_md.py --backend cupy --theory "$theory" \
        --shape "$l0" "$l1" "$l2" "$l3" --dtype "$dtype" --n-steps "$steps" --no-c-reference \
        --repeat 3 2>&1 | tee "$out/bench_${theory}_${l0}_${dtype}.txt"
done
