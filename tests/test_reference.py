"""Fixed reference numbers of fixed-seed chains, one per theory (and a nested integrator).

Not physics checks (those compare with exact results elsewhere) but a tripwire: any change of
the random streams, the summation order, the force or the integrator schedule changes these
bits, on every process grid. When a change is intended, say so in the commit, update the
numbers, and bump the checkpoint format version if the meaning of stored states changed.
"""

import pytest
from mpi4py import MPI

from lqcdflow.io.checksum import field_checksum
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import leapfrog
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.u1 import U1

# theory, lattice, n_steps -> (Delta H as float.hex, accepted) of trajectories 1..6 from a hot
# start with seed 2026 and leapfrog, tau = 1; and the final field's checksum
REFERENCE = {
    "phi4": ((8, 4), 2, [
        ("0x1.42ae172d43d4fp+0", False), ("0x1.052693227318ap+0", False),
        ("0x1.45c8dd626616bp+2", False), ("0x1.b0603548258cap-1", False),
        ("0x1.84ad17b7c2111p-1", True), ("-0x1.83c42063b903ep-2", True)],
        0x3f3fba062206bf15),
    "phi4 nested": ((8, 4), [2, 1], [
        ("0x1.42ae172d43d42p+0", False), ("0x1.052693227318fp+0", False),
        ("0x1.45c8dd626616bp+2", False), ("0x1.b0603548258d0p-1", False),
        ("0x1.84ad17b7c210ap-1", True), ("-0x1.83c42063b907ap-2", True)],
        0xfd6aed3bed482ab8),
    "u1": ((4, 6, 4), 2, [
        ("-0x1.6c5938a9944b8p+3", True), ("0x1.beb6a529ece88p+1", False),
        ("0x1.7a9365eb697c6p+1", False), ("0x1.202648198ad26p+3", False),
        ("0x1.347acdb9529a9p+3", False), ("-0x1.36264f644a9c2p+1", True)],
        0xd573957b091291c0),
}


def theory(name, lattice):
    if name.startswith("phi4"):
        return Phi4(lattice, Phi4Couplings.hopping(0.2, 0.3))
    return U1(lattice, 1.3)


@pytest.mark.mpi
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_fixed_seed_chains_reproduce_their_reference_bits_on_every_grid(name, comm):
    shape, n_steps, history, checksum = REFERENCE[name]
    grids = [(None, MPI.COMM_SELF)] + [(g, comm) for g in valid_grids(shape, comm.Get_size())]
    for grid, on in grids:
        t = theory(name, Lattice(shape, comm=on, grid=grid))
        rng = CounterRNG(2026)
        seen = []
        state = run_chain(HMC.of(t, leapfrog(), n_steps, 1.0, rng), initial_state(t, rng, "hot"),
                          6, [lambda s, info: seen.append((info.delta_H.hex(), info.accepted))])
        assert seen == history, (name, grid)
        assert field_checksum(t.lattice, state.field) == checksum, (name, grid)
