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


def test_a_failure_on_one_rank_ends_the_run_at_once(tmp_path, comm):
    """A test failing on rank 1 while rank 0 waits in a collective call: the conftest aborts
    every rank and names the test, instead of a hang until the timeout."""
    if comm.Get_size() > 1:
        pytest.skip("already running under mpiexec")
    tests = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((tests / "conftest.py").read_text())
    (tmp_path / "test_one_rank_fails.py").write_text(
        "def test_rank_1_fails(comm):\n"
        "    assert comm.Get_rank() != 1, 'rank 1 disagrees'\n"
        "    comm.Barrier()\n")
    result = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "test_one_rank_fails.py"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    assert "[rank 1/2] test_one_rank_fails.py::test_rank_1_fails failed (call)" in result.stderr
    assert "rank 1 disagrees" in result.stderr
