"""Matrix groups of gauge fields: complex matrix algebra in real arithmetic (matrices.py) and
SU(N), its Lie algebra, exponential, projection and Haar measure (su_n.py)."""
