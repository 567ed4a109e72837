"""Counter-based random numbers: known answers, distributions, independence of the decomposition."""

import math

import numpy as np
import pytest
from scipy import stats

from lqcdflow.rng import (STREAM_ACCEPT, STREAM_MOMENTA, CounterRNG, log_exact, philox4x32,
                          uniform_from_words)

# Known-answer vectors of Random123's philox4x32-10 (kat_vectors).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    assert tuple(int(w) for w in philox4x32(counter, key)) == expected


def test_philox_vectorised_equals_scalar():
    c = np.arange(50, dtype=np.uint64)
    vec = philox4x32((c, c + 7, 3, 9), (11, 13))
    for i in (0, 17, 49):
        one = philox4x32((int(c[i]), int(c[i]) + 7, 3, 9), (11, 13))
        assert all(int(v[i]) == int(o) for v, o in zip(vec, one))


def test_uniform_open_interval_extremes():
    zero = np.zeros(1, np.uint64)
    ones = np.full(1, 0xFFFFFFFF, np.uint64)
    assert 0.0 < uniform_from_words(zero, zero)[0] < 1e-15
    assert 1.0 - 1e-15 < uniform_from_words(ones, ones)[0] < 1.0


def test_log_exact_matches_libm():
    x = np.concatenate([np.random.default_rng(1).uniform(1e-300, 1.0, 100_000),
                        [1e-300, 0.5, 0.7071067811865476, 1.0 - 2**-52, 1.0]])
    err = np.abs(log_exact(x) - np.log(x))
    assert np.all(err <= 4 * np.spacing(np.abs(np.log(x))) + 1e-300)


def test_normal_distribution_chi_square():
    z = CounterRNG(7).normal(np.arange(200_000), draw=1, stream=STREAM_MOMENTA)
    edges = np.linspace(-4, 4, 41)
    observed, _ = np.histogram(z, bins=edges)
    expected = len(z) * np.diff(stats.norm.cdf(edges))
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert stats.chi2.sf(chi2, len(observed) - 1) > 1e-4
    assert abs(np.mean(z)) < 5 / math.sqrt(len(z))
    assert abs(np.var(z) - 1) < 5 * math.sqrt(2 / len(z))


def test_uniform_distribution_kolmogorov_smirnov():
    u = CounterRNG(3).uniform(np.arange(100_000), draw=5, stream=STREAM_ACCEPT)
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_site_values_do_not_depend_on_the_other_sites():
    rng = CounterRNG(2026)
    sites = np.arange(10_000, dtype=np.uint64)
    whole = rng.normal(sites, 4, STREAM_MOMENTA)
    part = rng.normal(sites[1234:1300], 4, STREAM_MOMENTA)
    shuffled = np.random.default_rng(0).permutation(sites)
    assert np.array_equal(whole[1234:1300], part)
    assert np.array_equal(whole[shuffled], rng.normal(shuffled, 4, STREAM_MOMENTA))


def test_streams_draws_and_seeds_differ():
    sites = np.arange(1000)
    a = CounterRNG(1).normal(sites, 1, STREAM_MOMENTA)
    assert not np.array_equal(a, CounterRNG(1).normal(sites, 2, STREAM_MOMENTA))
    assert not np.array_equal(a, CounterRNG(2).normal(sites, 1, STREAM_MOMENTA))
    assert abs(np.corrcoef(a, CounterRNG(1).normal(sites, 1, STREAM_ACCEPT))[0, 1]) < 0.15


def test_bad_seed_and_draw():
    with pytest.raises(ValueError, match="seed"):
        CounterRNG(-1)
    with pytest.raises(ValueError, match="draw"):
        CounterRNG(1).uniform(np.arange(3), 2**32, STREAM_ACCEPT)
