"""Files of format version 1 (lqcdflow before the theory-agnostic core: phi^4 only) still
verify, analyse and continue, and the phi^4 chain itself is unchanged, bit for bit.

``tests/data/v1`` was written by commit 57584bf (`lqcdflow run v1.toml`: 20 trajectories on an
8x4 lattice from a cold start, checkpoints at 10 and 20, every 5th configuration saved).
"""

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
from runs import TIMEOUT, command, lqcdflow, series

from lqcdflow.analysis.summary import summarize

DATA = Path(__file__).parent / "data" / "v1"


def run_in(directory, args):
    return subprocess.run(command(args), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=directory)


def test_version_1_files_verify_and_analyse():
    files = [DATA / "v1.h5", DATA / "v1.configs.h5", *sorted((DATA / "v1.ck").glob("*.h5"))]
    result = lqcdflow(["info", *map(str, files)])
    assert result.returncode == 0, result.stderr
    assert "format version 1" in result.stdout and "all field checksums ok" in result.stdout
    assert result.stdout.count("state hash and field checksum ok") == 2
    result = lqcdflow(["analyze", "--thermalization", "0", "--json", str(DATA / "v1.h5")])
    # 10 measurements: too few for analyze's minimum of 100, but the file is read
    assert result.returncode == 2 and "chain too short: 10 measurements" in result.stderr
    rows = dict(summarize(str(DATA / "v1.h5"), 0))  # the table run prints (5 at least)
    assert rows["acceptance"].value == 1.0 and 0.1 < rows["<S>/V"].value < 2


def test_version_1_chain_continues_bitwise_like_a_new_one(tmp_path):
    """Continuing the version-1 run to 40 trajectories equals a fresh 40-trajectory run of
    today's code: the phi^4 chain (momenta, force, sums, decisions) did not change."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(DATA, old)
    for directory in (old, new):
        directory.mkdir(exist_ok=True)
        text = (DATA / "v1.toml").read_text().replace("n_trajectories = 20",
                                                      "n_trajectories = 40")
        (directory / "v1.toml").write_text(text)
    result = run_in(old, ["run", "v1.toml"])
    assert result.returncode == 0, result.stderr
    assert "continuing from checkpoint at trajectory 20" in result.stdout
    assert run_in(new, ["run", "-q", "v1.toml"]).returncode == 0
    continued, fresh = series(old / "v1.h5"), series(new / "v1.h5")
    # C(t) is now an exactly rounded sum; version 1 summed with BLAS (last bits may differ)
    correlators = [np.frombuffer(s.pop("observables/correlator")) for s in (continued, fresh)]
    assert continued == fresh
    np.testing.assert_allclose(*correlators, rtol=1e-14, atol=0)
    with h5py.File(DATA / "v1.h5", "r") as f:
        written = f["observables/correlator"].size  # by version 1
    assert correlators[0].size > written
    assert np.array_equal(correlators[0][written:], correlators[1][written:])
    with h5py.File(old / "v1.h5", "r") as f:  # converted to version 3 on the way
        assert f.attrs["format_version"] == 3 and f.attrs["field"] == "phi"
    with h5py.File(old / "v1.configs.h5", "r") as a, h5py.File(new / "v1.configs.h5", "r") as b:
        assert a["configurations/phi"][()].tobytes() == b["configurations/phi"][()].tobytes()
        assert len(a["configurations/phi"]) == 8
    result = lqcdflow(["info", str(old / "v1.configs.h5")])
    assert result.returncode == 0 and "all field checksums ok" in result.stdout
