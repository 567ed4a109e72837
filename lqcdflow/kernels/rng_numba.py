"""Compiled (Numba) random numbers of lqcdflow.rng: Gaussian ones, the same bits as
CounterRNG.normal, and for the local updates the uniforms of CounterRNG.words and log_exact.

CounterRNG.normal makes a dozen array passes per attempt of the polar method (Philox's ten
rounds, the uniforms, the exact logarithm's series), and on small lattices drawing the momenta
took more time than the compiled molecular dynamics itself. Here each site is one loop
iteration: Philox4x32-10 on its counter, attempts until the polar method accepts. Every step is
integer arithmetic or IEEE-exact floating point (+, -, *, /, sqrt, frexp) in the order of
lqcdflow.rng, so the numbers are the same bits.
"""

import math

import numba
import numpy as np

from lqcdflow.kernels.jit import kernel
from lqcdflow.rng import _LN2, _PHILOX_M, _PHILOX_W, _ROUNDS, _MAX_ATTEMPTS as MAX_ATTEMPTS

_MASK = np.uint64(0xFFFFFFFF)
_M0, _M1 = _PHILOX_M
_W0, _W1 = np.uint64(_PHILOX_W[0]), np.uint64(_PHILOX_W[1])
_32, _26, _24, _6 = np.uint64(32), np.uint64(26), np.uint64(24), np.uint64(6)
_MAX_ATTEMPTS = np.uint64(MAX_ATTEMPTS)
# 1 / (2k + 1) of log_exact's series, k = 0 .. 11: Python's correctly rounded quotients, as there
_RECIPROCALS = np.array([1.0 / (2 * k + 1) for k in range(12)])


@kernel(inline="always")
def _philox(c0, c1, c2, c3, k0, k1):
    """lqcdflow.rng.philox4x32 of one counter (uint64 words < 2^32)."""
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _32) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


@kernel(inline="always")
def _uniform(a, b):
    """lqcdflow.rng.uniform_from_words of one pair."""
    k = ((a >> _6) << _26) | (b >> _6)
    return (np.float64(k) + 0.5) * 2.0**-52


@kernel(inline="always")
def log(x):
    """lqcdflow.rng.log_exact of one positive number."""
    m, e = math.frexp(x)
    if m < 0.7071067811865476:
        m = m * 2.0
        e = e - 1
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    series = 1.0 / 25.0
    for k in range(11, -1, -1):
        series = series * t2
        series = series + _RECIPROCALS[k]
    return np.float64(e) * _LN2 + 2.0 * t * series


@kernel(inline="always")
def uniforms(site, draw, stream, attempt, k0, k1):
    """The two uniforms of CounterRNG.words(site, draw, stream, attempt): uniform_from_words
    of words (0, 1) and of words (2, 3) (uint64 arguments)."""
    w0, w1, w2, w3 = _philox(site & _MASK, site >> _32, draw, (stream << _24) | attempt, k0, k1)
    return _uniform(w0, w1), _uniform(w2, w3)


@kernel(parallel=True)
def normal(sites, draw, stream, k0, k1, out):
    """out[i] = CounterRNG(seed).normal at global site index sites[i] (uint64), draw ``draw``,
    stream ``stream``; (k0, k1) the key words (uint64). NaN where 2^24 attempts all failed
    (probability (1 - pi/4)^(2^24), where CounterRNG.normal raises)."""
    for i in numba.prange(sites.size):
        site, attempt, s, u = sites[i], np.uint64(0), 2.0, 0.0
        while attempt < _MAX_ATTEMPTS and not (s < 1.0 and s > 0.0):
            w0, w1, w2, w3 = _philox(site & _MASK, site >> _32, draw, (stream << _24) | attempt,
                                     k0, k1)
            u = 2.0 * _uniform(w0, w1) - 1.0
            v = 2.0 * _uniform(w2, w3) - 1.0
            s = u * u + v * v
            attempt += np.uint64(1)
        out[i] = u * math.sqrt(-2.0 * log(s) / s) if s < 1.0 and s > 0.0 else np.nan
