"""The tests marked ``mpi``, run again under ``mpiexec -n 2`` and ``-n 4``.

Run serially, the mpi-marked tests see a world of one rank, where comparing a decomposed
result with the single-rank one cannot fail; here they run on 2 and 4 ranks, where every
process grid of those rank counts is compared with the undecomposed reference. So a plain
``pytest`` (what ``tools/test.sh`` runs) covers the multi-rank cases too. Each run is bounded
by a timeout, so that a deadlock fails instead of hanging.
"""

import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 1200


@pytest.mark.parametrize("ranks", [2, 4])
def test_mpi_marked_tests_pass_on_several_ranks(ranks, comm):
    if comm.Get_size() > 1:
        pytest.skip("already running under mpiexec")
    tests = Path(__file__).parent
    result = subprocess.run(
        ["mpiexec", "-n", str(ranks), sys.executable, "-m", "pytest", "-q", "-rs",
         "-p", "no:cacheprovider", "-m", "mpi", str(tests)],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=tests.parent)
    summary = [line for line in result.stdout.splitlines() if " passed" in line or
               " failed" in line or line.startswith(("FAILED", "ERROR"))]
    print(f"mpiexec -n {ranks}: " + "; ".join(sorted(set(summary))))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
