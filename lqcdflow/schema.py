"""Run-file keys: their types, defaults and checks, and how a section is validated.

Shared by the run file's own sections (:mod:`lqcdflow.config`) and the [theory] keys each
theory declares (:mod:`lqcdflow.theories`).
"""

import math
from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(ValueError):
    """A run file that cannot be run; the message is one line naming the offending key."""


REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """Schema of one run-file key: its type, default, and a check of its value."""

    # "int", "float", "bool", "str", "choice", "int list", "int list or auto", "int or int list"
    kind: str
    default: Any = REQUIRED
    check: Callable[[Any], bool] = lambda v: True
    allowed: str = ""
    choices: tuple = ()
    # integers must lie in [-int_limit, int_limit): int64 unless a key is stored unsigned
    int_limit: int = 2**63


def _is_int(v, limit=2**63):
    """An integer (not a bool) that the files and arrays can hold: -limit <= v < limit."""
    return isinstance(v, int) and not isinstance(v, bool) and -limit <= v < limit


def _is_finite(v):
    """A real number that is neither NaN nor infinite (TOML's nan, inf, 1e400 are not)."""
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond the float range
        return False


def _valid_type(kind, v, choices, limit=2**63):
    if kind == "int":
        return _is_int(v, limit)
    if kind == "float":
        return (isinstance(v, (int, float)) and not isinstance(v, bool)) and _is_finite(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "choice":
        return v in choices
    if kind == "int list":
        return isinstance(v, list) and len(v) > 0 and all(_is_int(x) for x in v)
    if kind == "int list or auto":
        return v == "auto" or _valid_type("int list", v, choices)
    if kind == "int or int list":
        return _is_int(v) or _valid_type("int list", v, choices)
    raise AssertionError(kind)


def positive(v):
    return v > 0


def describe(key: Key):
    """What a key allows, for error messages."""
    if key.kind == "choice":
        return "one of " + ", ".join(repr(c) for c in key.choices)
    return key.allowed or f"a {key.kind}"


def validate_section(section, keys, given):
    """{name: value} of the keys of ``[section]`` from the ``given`` table, defaults filled in.

    Raises ConfigError for an unknown key, a missing required key, or a value of the wrong
    type or out of range.
    """
    if not isinstance(given, dict):
        raise ConfigError(f"[{section}] must be a table")
    extra = sorted(set(given) - set(keys))
    if extra:
        raise ConfigError(f"[{section}] unknown key {extra[0]!r}; allowed: " + ", ".join(keys))
    values = {}
    for name, key in keys.items():
        if name not in given:
            if key.default is REQUIRED:
                raise ConfigError(f"[{section}] missing key '{name}' ({describe(key)})")
            values[name] = key.default
            continue
        v = given[name]
        if not _valid_type(key.kind, v, key.choices, key.int_limit) or not key.check(v):
            raise ConfigError(f"[{section}] {name} = {v!r} is not allowed; "
                              f"expected {describe(key)}")
        values[name] = float(v) if key.kind == "float" else v
    return values
