"""Choice and validation of the process grid."""

import pytest

from lqcdflow.parallel.grid import GridError, check_grid, choose_grid, halo_sites, valid_grids


@pytest.mark.parametrize("shape, n, expected", [
    ((16, 16), 1, (1, 1)),
    ((16, 16), 4, (4, 1)),  # ties with (2, 2): fewer, contiguous messages win
    ((12, 12), 9, (3, 3)),
    ((32, 8), 4, (4, 1)),
    ((8, 8, 8, 8), 16, (4, 4, 1, 1)),
    ((6, 4), 3, (3, 1)),
    ((7,), 7, (7,)),
])
def test_choose_grid(shape, n, expected):
    assert choose_grid(shape, n) == expected


def test_chosen_grid_has_minimal_halo():
    for shape, n in [((12, 8, 6), 6), ((8, 8, 8, 4), 8), ((10, 10), 5)]:
        best = choose_grid(shape, n)
        assert halo_sites(shape, best) == min(halo_sites(shape, g) for g in valid_grids(shape, n))


def test_impossible_grids():
    with pytest.raises(GridError, match="cannot be split evenly over 8 ranks"):
        choose_grid((6, 6), 8)
    with pytest.raises(GridError, match="not divisible by 3"):
        check_grid((8, 8), (3, 1), 3)
    with pytest.raises(GridError, match="has 2 ranks, the job has 4"):
        check_grid((8, 8), (2, 1), 4)
    with pytest.raises(GridError, match="2 directions"):
        check_grid((8, 8, 8), (2, 1), 2)
