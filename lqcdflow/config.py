"""Run files: TOML with sections [lattice], [theory], [sampler], [output], [checkpoint], [run],
and [flow] for flow sampling (``algorithm = "nmcmc"``).

Every key is checked against the schema below; anything unknown, missing, of the wrong type or
out of range raises ConfigError with a one-line message naming the key and what is allowed.
The result is a plain nested dict with all defaults filled in. Keys of one algorithm (or
coupling, or schedule) only are refused under another one, and left out of the result (so that
an ensemble's attributes hold only the keys its run used); the [flow] section exists (filled
with its defaults) exactly when ``algorithm = "nmcmc"``.
"""

import os
import tomllib
from dataclasses import dataclass
from typing import Any, Callable

from lqcdflow.mc.integrators import SCHEMES, OMELYAN_XI


class ConfigError(ValueError):
    """A run file that cannot be run; the message is one line naming the offending key."""


_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """Schema of one run-file key: its type, default, and a check of its value."""

    kind: str  # "int", "float", "bool", "str", "int list", "int list or auto", "choice"
    default: Any = _REQUIRED
    check: Callable[[Any], bool] = lambda v: True
    allowed: str = ""
    choices: tuple = ()


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_type(kind, v, choices):
    if kind == "int":
        return _is_int(v)
    if kind == "float":
        return _is_int(v) or isinstance(v, float)
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
    raise AssertionError(kind)


def _positive(v):
    return v > 0


# [sampler] keys of each algorithm only; a run file giving one under the other is refused.
HMC_ONLY = ("integrator", "xi", "trajectory_length", "n_steps")
NMCMC_ONLY = ("batch",)
# [flow] keys of one coupling or schedule only.
FLOW_ONLY = {"bins": ("coupling", "spline"), "bound": ("coupling", "spline"),
             "lr_min": ("schedule", "cosine")}
# Training step n draws its batch from the flow prior's draw number n (0 .. steps - 1); flow
# sampling draws its proposals from the last draw number, which training never reaches.
SAMPLING_DRAW = 2**32 - 1


SCHEMA = {
    "lattice": {
        "shape": Key("int list", check=lambda v: all(x > 0 for x in v),
                     allowed="a list of positive extents, e.g. [16, 16]"),
        "grid": Key("int list or auto", "auto",
                    check=lambda v: v == "auto" or all(x > 0 for x in v),
                    allowed='"auto" or a list of ranks per direction, e.g. [2, 1]'),
    },
    "theory": {
        "name": Key("choice", "phi4", choices=("phi4",)),
        "form": Key("choice", "hopping", choices=("hopping", "standard")),
        "kappa": Key("float", None, allowed="a real number (hopping form)"),
        "m2": Key("float", None, allowed="a real number (standard form)"),
        "lambda": Key("float", check=lambda v: v >= 0, allowed="a real number >= 0"),
    },
    "sampler": {
        "algorithm": Key("choice", "hmc", choices=("hmc", "nmcmc")),
        "integrator": Key("choice", "omelyan2", choices=tuple(SCHEMES)),
        "xi": Key("float", OMELYAN_XI, check=lambda v: 0 < v < 0.5,
                  allowed="a number in (0, 0.5) (omelyan2 only)"),
        "trajectory_length": Key("float", 1.0, check=_positive, allowed="a number > 0"),
        "n_steps": Key("int", None, check=_positive, allowed="an integer > 0"),
        "n_trajectories": Key("int", check=_positive, allowed="an integer > 0"),
        "n_thermalization": Key("int", 0, check=lambda v: v >= 0, allowed="an integer >= 0"),
        "measure_every": Key("int", 1, check=_positive, allowed="an integer > 0"),
        "batch": Key("int", 64, check=_positive,
                     allowed="an integer > 0 (proposals per flow evaluation)"),
    },
    "flow": {
        "coupling": Key("choice", "spline", choices=("affine", "spline")),
        "n_layers": Key("int", 8, check=_positive, allowed="an integer > 0"),
        "hidden": Key("int list", [8, 8], check=lambda v: all(x > 0 for x in v),
                      allowed="a list of positive channel counts, e.g. [8, 8]"),
        "kernel_size": Key("int", 3, check=lambda v: v > 0 and v % 2 == 1,
                           allowed="an odd integer > 0"),
        "bins": Key("int", 8, check=_positive, allowed="an integer > 0 (spline only)"),
        "bound": Key("float", 4.0, check=_positive, allowed="a number > 0 (spline only)"),
        "z2": Key("bool", True),
        "init_seed": Key("int", 0, check=lambda v: 0 <= v < 2**63,
                         allowed="an integer in [0, 2^63)"),
        "batch": Key("int", 32, check=lambda v: v >= 2, allowed="an integer >= 2"),
        "steps": Key("int", 5000, check=lambda v: 0 < v < SAMPLING_DRAW,
                     allowed="an integer in (0, 2^32 - 1)"),
        "learning_rate": Key("float", 3e-3, check=_positive, allowed="a number > 0"),
        "schedule": Key("choice", "cosine", choices=("constant", "cosine")),
        "lr_min": Key("float", 0.0, check=lambda v: v >= 0, allowed="a number >= 0"),
        "state": Key("str", "", allowed='a file name ("": next to the output file, '
                                        '<file without .h5>.flow.h5)'),
        "save_every": Key("int", 100, check=_positive, allowed="an integer > 0"),
        "progress_every": Key("int", 100, check=_positive, allowed="an integer > 0"),
    },
    "output": {
        "file": Key("str", check=lambda v: v.strip() != "", allowed="a file name"),
        "overwrite": Key("bool", False),
        "progress_every": Key("int", 100, check=_positive, allowed="an integer > 0"),
        "configurations": Key("str", "", allowed='a file name, or "" for none'),
        "save_every": Key("int", 1, check=_positive, allowed="an integer > 0"),
    },
    "checkpoint": {
        "directory": Key("str", "", allowed='a directory name ("": next to the output '
                                                   'file, <file without .h5>.checkpoints)'),
        "every": Key("int", 100, check=_positive, allowed="an integer > 0"),
        "keep": Key("int", 2, check=_positive, allowed="an integer > 0"),
        "restart": Key("choice", "auto", choices=("auto", "never")),
        "walltime": Key("float", 0.0, check=lambda v: v >= 0,
                        allowed="seconds >= 0 (0: no limit)"),
        "margin": Key("float", 0.0, check=lambda v: v >= 0,
                      allowed="seconds >= 0 (0: automatic)"),
    },
    "run": {
        "seed": Key("int", check=lambda v: 0 <= v < 2**64, allowed="an integer in [0, 2^64)"),
        "backend": Key("choice", "numpy", choices=("numpy", "cupy")),
        "dtype": Key("choice", "float64", choices=("float64", "float32")),
        "gpu_aware_mpi": Key("bool", False),
        "start": Key("choice", "cold", choices=("cold", "hot")),
    },
}


def _describe(key: Key):
    if key.kind == "choice":
        return "one of " + ", ".join(repr(c) for c in key.choices)
    return key.allowed or f"a {key.kind}"


def validate(raw):
    """Check a parsed run file against SCHEMA; return it with defaults filled in."""
    if not isinstance(raw, dict):
        raise ConfigError("run file must be a TOML table")
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; allowed: "
                          + ", ".join(f"[{s}]" for s in SCHEMA))
    config = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section)
        if given is None:
            if any(k.default is _REQUIRED for k in keys.values()):
                raise ConfigError(f"missing section [{section}]")
            given = {}
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table")
        extra = sorted(set(given) - set(keys))
        if extra:
            raise ConfigError(f"[{section}] unknown key '{extra[0]}'; allowed: "
                              + ", ".join(keys))
        values = {}
        for name, key in keys.items():
            if name not in given:
                if key.default is _REQUIRED:
                    raise ConfigError(f"[{section}] missing key '{name}' ({_describe(key)})")
                values[name] = key.default
                continue
            v = given[name]
            if not _valid_type(key.kind, v, key.choices) or not key.check(v):
                raise ConfigError(f"[{section}] {name} = {v!r} is not allowed; "
                                  f"expected {_describe(key)}")
            values[name] = float(v) if key.kind == "float" else v
        config[section] = values
    _check_theory(config["theory"], given=raw.get("theory", {}))
    _check_sampler(config["sampler"], given=raw.get("sampler", {}))
    _check_lattice(config["lattice"])
    _check_stability(config["theory"], len(config["lattice"]["shape"]))
    stem = os.path.splitext(config["output"]["file"])[0]
    if not config["checkpoint"]["directory"].strip():
        # each output file gets its own checkpoints, so that runs never mix by accident
        config["checkpoint"]["directory"] = stem + ".checkpoints"
    if config["sampler"]["algorithm"] == "nmcmc":
        _check_flow(config["flow"], given=raw.get("flow", {}), theory=config["theory"])
        if not config["flow"]["state"].strip():
            config["flow"]["state"] = stem + ".flow.h5"
    elif "flow" in raw:
        raise ConfigError("section [flow] is only used by [sampler] algorithm = 'nmcmc'")
    else:
        del config["flow"]
    return config


def _check_theory(theory, given):
    needed, forbidden = (("kappa",), "m2") if theory["form"] == "hopping" else (("m2",), "kappa")
    for name in needed:
        if theory[name] is None:
            raise ConfigError(f"[theory] missing key '{name}' (needed by form = "
                              f"'{theory['form']}')")
    if forbidden in given:
        raise ConfigError(f"[theory] key '{forbidden}' does not belong to form = "
                          f"'{theory['form']}'")


def _only_for(section, values, given, names, key, value):
    """Refuse keys ``names`` unless ``values[key] == value``; leave them out then."""
    if values[key] == value:
        return
    for name in names:
        if name in given:
            raise ConfigError(f"[{section}] key '{name}' is only used by {key} = '{value}'")
        del values[name]


def _check_sampler(sampler, given):
    _only_for("sampler", sampler, given, HMC_ONLY, "algorithm", "hmc")
    _only_for("sampler", sampler, given, NMCMC_ONLY, "algorithm", "nmcmc")
    if sampler["algorithm"] == "hmc":
        if sampler["n_steps"] is None:
            raise ConfigError(f"[sampler] missing key 'n_steps' "
                              f"({_describe(SCHEMA['sampler']['n_steps'])})")
        if "xi" in given and sampler["integrator"] != "omelyan2":
            raise ConfigError("[sampler] key 'xi' is only used by integrator = 'omelyan2'")
    if sampler["n_thermalization"] >= sampler["n_trajectories"]:
        raise ConfigError("[sampler] n_thermalization must be smaller than n_trajectories")


def _check_flow(flow, given, theory):
    if theory["form"] != "standard":
        raise ConfigError(f"[theory] form = '{theory['form']}' cannot be used with algorithm = "
                          "'nmcmc': flows sample the standard form (m2, lambda)")
    for name, (key, value) in FLOW_ONLY.items():
        _only_for("flow", flow, given, (name,), key, value)
    if flow["schedule"] == "cosine" and flow["lr_min"] > flow["learning_rate"]:
        raise ConfigError(f"[flow] lr_min = {flow['lr_min']} exceeds learning_rate = "
                          f"{flow['learning_rate']}")


def _check_stability(theory, ndim):
    """At lambda = 0 the action is bounded below only for a positive quadratic form."""
    if theory["lambda"] != 0:
        return
    if theory["form"] == "hopping" and not abs(theory["kappa"]) < 1 / (2 * ndim):
        raise ConfigError(f"[theory] kappa = {theory['kappa']} with lambda = 0 is unstable; "
                          f"the free field needs |kappa| < 1/(2D) = {1 / (2 * ndim):.6g}")
    if theory["form"] == "standard" and not theory["m2"] > 0:
        raise ConfigError(f"[theory] m2 = {theory['m2']} with lambda = 0 is unstable; "
                          "the free field needs m2 > 0")


def _check_lattice(lattice):
    grid = lattice["grid"]
    if grid != "auto" and len(grid) != len(lattice["shape"]):
        raise ConfigError(f"[lattice] grid {grid} must have one entry per direction of "
                          f"shape {lattice['shape']}")


def parse(text, source):
    """Parse and validate run-file ``text``; ``source`` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"run file {source} is not valid TOML: {e}") from None
    return validate(raw)
