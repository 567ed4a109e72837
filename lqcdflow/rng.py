"""Counter-based random numbers per global lattice site (Philox4x32-10).

A random number is a pure function of (seed, global site index, draw number, stream), never of
the rank that draws it, so a Markov chain does not depend on how the lattice is cut. Only
integer operations and IEEE-exact arithmetic (+, -, *, /, sqrt, frexp) are used, each as a
separate array operation, so NumPy and CuPy produce the same bits.

Counter layout (four 32-bit words):
``(site mod 2^32, site div 2^32, draw, stream * 2^24 + attempt)``;
key: ``(seed mod 2^32, seed div 2^32)``.

References: J. K. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11 (Philox);
G. Marsaglia and T. A. Bray, SIAM Rev. 6 (1964) 260 (polar method).
"""

from dataclasses import dataclass

import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_ROUNDS = 10

# Streams: independent sequences for the different uses of random numbers.
STREAM_MOMENTA = 1
STREAM_ACCEPT = 2
STREAM_HOT_START = 3
STREAM_LOCAL = 4  # local updates (lqcdflow.mc.local)

_MAX_ATTEMPTS = 1 << 24
_LN2 = 0.6931471805599453


def philox4x32(counter, key, xp=np):
    """Philox4x32-10 block cipher applied elementwise.

    Parameters
    ----------
    counter : sequence of 4 arrays (or ints)
        The counter words, values in [0, 2^32), broadcastable against each other.
    key : tuple of 2 ints
        The key words, in [0, 2^32).
    xp : module
        ``numpy`` or ``cupy``.

    Returns
    -------
    tuple of 4 uint64 arrays with values in [0, 2^32).

    Each round maps (c0, c1, c2, c3) to
    (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)) and the key is bumped by the
    Weyl constants (W0, W1) between rounds.

    >>> [hex(int(w)) for w in philox4x32([0, 0, 0, 0], (0, 0))]
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) for c in counter)
    k0, k1 = int(key[0]), int(key[1])
    for r in range(_ROUNDS):
        if r:
            k0 = (k0 + _PHILOX_W[0]) & 0xFFFFFFFF
            k1 = (k1 + _PHILOX_W[1]) & 0xFFFFFFFF
        p0 = _PHILOX_M[0] * c0
        p1 = _PHILOX_M[1] * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0),
            p1 & _MASK32,
            (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1),
            p0 & _MASK32,
        )
    return c0, c1, c2, c3


def uniform_from_words(a, b):
    """Map two 32-bit words to a float64 uniform in the open interval (0, 1).

    u = (k + 1/2) 2^-52 with k = (a >> 6) 2^26 + (b >> 6), a 52-bit integer; exact in float64.
    """
    k = ((a >> np.uint64(6)) << np.uint64(26)) | (b >> np.uint64(6))
    return (k.astype(np.float64) + 0.5) * 2.0**-52


def log_exact(x, xp=np):
    """Natural logarithm of positive x from IEEE-exact operations only (same bits on CPU and GPU).

    x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(t) = 2 sum_k t^(2k+1)/(2k+1) with
    t = (m - 1)/(m + 1), |t| < 0.172, summed to k = 12 (truncation < 1e-19 relative).
    """
    m, e = xp.frexp(x)
    small = m < 0.7071067811865476
    m = xp.where(small, m * 2.0, m)
    e = e - small.astype(e.dtype)
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    series = xp.full_like(t, 1.0 / 25.0)
    for k in range(11, -1, -1):
        series = series * t2
        series = series + 1.0 / (2 * k + 1)
    return e.astype(np.float64) * _LN2 + 2.0 * t * series


def check_draw(draw):
    """ValueError unless ``draw`` fits the counter's draw word, [0, 2^32)."""
    if not 0 <= draw < 2**32:
        raise ValueError(f"draw number must be in [0, 2^32), got {draw}")


@dataclass(frozen=True)
class CounterRNG:
    """Random numbers as pure functions of (seed, global site, draw, stream).

    Parameters
    ----------
    seed : int
        In [0, 2^64).
    """

    seed: int

    def __post_init__(self):
        if not 0 <= int(self.seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2^64), got {self.seed}")

    @property
    def key(self):
        return (int(self.seed) & 0xFFFFFFFF, int(self.seed) >> 32)

    def words(self, sites, draw, stream, attempt=0, xp=np):
        """The four Philox output words for each global site index in ``sites`` (uint64)."""
        check_draw(draw)
        sites = xp.asarray(sites, dtype=xp.uint64)
        counter = (sites & _MASK32, sites >> np.uint64(32), draw, (stream << 24) | attempt)
        return philox4x32(counter, self.key, xp)

    def uniform(self, sites, draw, stream, xp=np):
        """Uniform numbers in (0, 1), one per entry of ``sites``."""
        w = self.words(sites, draw, stream, xp=xp)
        return uniform_from_words(w[0], w[1])

    def uniform_scalar(self, draw, stream):
        """One uniform number in (0, 1), the same on every rank (drawn at site 0)."""
        return float(self.uniform(np.zeros(1, np.uint64), draw, stream)[0])

    def normal(self, sites, draw, stream, xp=np):
        """Standard normal numbers, one per entry of ``sites`` (Marsaglia's polar method).

        Attempt a at a site gives u, v uniform in (-1, 1); it is accepted when
        0 < s = u^2 + v^2 < 1, and then z = u sqrt(-2 log(s) / s). Rejected sites retry with
        attempt a + 1, so the result at a site does not depend on any other site.
        """
        sites = xp.asarray(sites, dtype=xp.uint64)
        flat = sites.ravel()
        z = xp.empty(flat.shape, dtype=np.float64)
        pending = xp.arange(flat.size)
        for attempt in range(_MAX_ATTEMPTS):
            if pending.size == 0:
                return z.reshape(sites.shape)
            w = self.words(flat[pending], draw, stream, attempt, xp)
            u = 2.0 * uniform_from_words(w[0], w[1]) - 1.0
            v = 2.0 * uniform_from_words(w[2], w[3]) - 1.0
            s = u * u + v * v
            ok = (s < 1.0) & (s > 0.0)
            s_ok = s[ok]
            z[pending[ok]] = u[ok] * xp.sqrt(-2.0 * log_exact(s_ok, xp) / s_ok)
            pending = pending[~ok]
        raise RuntimeError("polar method did not terminate")  # probability 0
