"""Configurations written by lqcdflow read by an independent implementation: lyncs-io (from the
package index, in its own environment since it needs numpy < 2; tools/setup.sh makes it).

lyncs-io 0.2 reads ILDG and openQCD files but writes neither (its writers raise
NotImplementedError), so the direction other code -> lqcdflow is checked against the layouts
parsed from the formats' descriptions in test_gauge_files.py instead.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
from mpi4py import MPI

from su_n_fields import haar_links
from lqcdflow.io import gauge_files
from lqcdflow.parallel import Lattice
from lqcdflow.theories.sun import SUN

INTEROP = Path(os.environ.get("LQCDFLOW_INTEROP_VENV",
                              Path.home() / ".venvs" / "lqcdflow-interop")) / "bin" / "python"

READER = """
import json, sys
import numpy as np
import lyncs_io
lime, oqcd, expected = sys.argv[1:]
links = np.load(expected)  # lqcdflow's axes t, x, y, z and directions
ildg = lyncs_io.load(lime, format="lime")  # t, z, y, x; directions x, y, z, t
openqcd = lyncs_io.load(oqcd, format="openqcd")  # t, x, y, z (x3 fastest)

def plaquette(u):  # mean Re tr U_P / 3 by numpy's matmul over t, x, y, z axes
    total, count = 0.0, 0
    for mu in range(4):
        for nu in range(mu + 1, 4):
            a = u[..., mu, :, :] @ np.roll(u[..., nu, :, :], -1, axis=mu)
            b = u[..., nu, :, :] @ np.roll(u[..., mu, :, :], -1, axis=nu)
            total += (a * b.conj()).real.sum()
            count += u.shape[0] * u.shape[1] * u.shape[2] * u.shape[3]
    return total / (3 * count)

as_lqcdflow = np.asarray(ildg).transpose(0, 3, 2, 1, 4, 5, 6)[..., [3, 0, 1, 2], :, :]
print(json.dumps({
    "ildg_shape": list(ildg.shape), "ildg_equal": bool(np.array_equal(as_lqcdflow, links)),
    "openqcd_equal": bool(np.array_equal(np.asarray(openqcd), links)),
    "openqcd_header_plaquette": lyncs_io.head(oqcd, format="openqcd")["plaq"],
    "plaquette": plaquette(np.asarray(openqcd))}))
"""


def test_lyncs_io_reads_lqcdflows_ildg_and_openqcd_files(tmp_path):
    shape = (4, 6, 2, 4)
    links = haar_links(shape, 3, 11)
    theory = SUN(Lattice(shape, comm=MPI.COMM_SELF), 3, 1.0)
    lime, oqcd, expected = tmp_path / "u.lime", tmp_path / "u.oqcd", tmp_path / "u.npy"
    gauge_files.write(str(lime), "ildg", theory, links)
    gauge_files.write(str(oqcd), "openqcd", theory, links)
    np.save(expected, links)
    assert INTEROP.exists(), f"{INTEROP} missing: run bash tools/setup.sh"
    result = subprocess.run([str(INTEROP), "-c", READER, str(lime), str(oqcd), str(expected)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["ildg_shape"] == [4, 4, 2, 6, 4, 3, 3]
    assert seen["ildg_equal"] and seen["openqcd_equal"]
    plaquette = theory.measure(links)["plaquette"]
    assert abs(seen["plaquette"] - plaquette) < 1e-14
    assert abs(seen["openqcd_header_plaquette"] - 3 * plaquette) < 1e-14
