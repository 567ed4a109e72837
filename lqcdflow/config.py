"""Run files: TOML with sections [lattice], [theory], [sampler], [output], [checkpoint], [run],
[flow] for flow sampling (``algorithm = "nmcmc"``) and [diffusion] for diffusion-model
proposals (``algorithm = "diffusion"``), parsed into typed Settings.

Every key is checked against the schema below (the [theory] keys against the schema of the
theory named by ``[theory] name``, see :mod:`lqcdflow.theories`); anything unknown, missing, of
the wrong type or out of range raises ConfigError with a one-line message naming the key and
what is allowed. The result is a frozen :class:`Settings` with one typed section object per
section and all defaults filled in: library code receives these objects, never the run-file
dict. Keys of one algorithm (or coupling, or schedule) only are refused under another one, and
left out of their section (so that an ensemble's attributes hold only the keys its run used);
``flow`` exists (filled with its defaults) exactly when ``algorithm = "nmcmc"``, ``diffusion``
exactly when ``algorithm = "diffusion"``.
"""

import dataclasses
import keyword
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from lqcdflow import theories
from lqcdflow.mc.integrators import SCHEMES, OMELYAN_XI
from lqcdflow.schema import REQUIRED, ConfigError, Key, describe, positive, validate_section

__all__ = ["ConfigError", "Settings", "parse", "validate"]

# [sampler] keys of some algorithms only; a run file giving one under another is refused.
ALGORITHM_KEYS = {"integrator": ("hmc",), "xi": ("hmc",), "trajectory_length": ("hmc",),
                  "n_steps": ("hmc",), "batch": ("nmcmc", "diffusion"),
                  "hits": ("metropolis",), "width": ("metropolis",),
                  "epsilon": ("langevin",), "metropolis": ("langevin",)}
LOCAL_ALGORITHMS = ("metropolis", "heatbath")  # checkerboard sweeps (lqcdflow.mc.local)
MD_ALGORITHMS = ("hmc", "langevin")  # molecular dynamics
RUN_ALGORITHMS = MD_ALGORITHMS + LOCAL_ALGORITHMS  # `lqcdflow run` runs them; [run] kernels choose how
# Those of a trained model (`lqcdflow train`, then `lqcdflow sample`), and its section.
TRAINED_ALGORITHMS = {"nmcmc": "flow", "diffusion": "diffusion"}
# [flow] keys of one coupling or schedule only.
FLOW_ONLY = {"bins": ("coupling", "spline"), "bound": ("coupling", "spline"),
             "components": ("coupling", "ncp"), "lr_min": ("schedule", "cosine")}
# Training step n draws its batch from the flow prior's draw number n (0 .. steps - 1); flow
# sampling draws its proposals from the last draw number, which training never reaches.
SAMPLING_DRAW = 2**32 - 1


def _training_keys(model, batch, batch_min, steps):
    """The keys of the training of a ``model`` ("flow" or "diffusion"), with its defaults of
    the batch (at least ``batch_min``) and of the steps."""
    return {
        "init_seed": Key("int", 0, check=lambda v: 0 <= v < 2**63,
                         allowed="an integer in [0, 2^63)"),
        "batch": Key("int", batch, check=lambda v: v >= batch_min,
                     allowed=f"an integer >= {batch_min}"),
        "steps": Key("int", steps, check=lambda v: 0 < v < SAMPLING_DRAW,
                     allowed="an integer in (0, 2^32 - 1)"),
        "learning_rate": Key("float", 3e-3, check=positive, allowed="a number > 0"),
        "schedule": Key("choice", "cosine", choices=("constant", "cosine")),
        "lr_min": Key("float", 0.0, check=lambda v: v >= 0, allowed="a number >= 0"),
        "max_grad_norm": Key("float", 0.0, check=lambda v: v >= 0,
                             allowed="a number >= 0 (0: the gradient is not clipped)"),
        "state": Key("str", "", allowed='a file name ("": next to the output file, '
                                        f'<file without .h5>.{model}.h5)'),
        "save_every": Key("int", 100, check=positive, allowed="an integer > 0"),
        "progress_every": Key("int", 100, check=positive, allowed="an integer > 0"),
    }


SCHEMA = {
    "lattice": {
        "shape": Key("int list", check=lambda v: all(x > 0 for x in v),
                     allowed="a list of positive extents, e.g. [16, 16]"),
        "grid": Key("int list or auto", "auto",
                    check=lambda v: v == "auto" or all(x > 0 for x in v),
                    allowed='"auto" or a list of ranks per direction, e.g. [2, 1]'),
    },
    # "theory": the keys of the theory named by [theory] name (lqcdflow.theories)
    "sampler": {
        "algorithm": Key("choice", "hmc", choices=RUN_ALGORITHMS + tuple(TRAINED_ALGORITHMS)),
        "integrator": Key("choice", "omelyan2", choices=tuple(SCHEMES)),
        "xi": Key("float", OMELYAN_XI, check=lambda v: 0 < v < 0.5,
                  allowed="a number in (0, 0.5) (omelyan2 only)"),
        "trajectory_length": Key("float", 1.0, check=positive, allowed="a number > 0"),
        "n_steps": Key("int or int list", None,
                       check=lambda v: all(x > 0 for x in ([v] if isinstance(v, int) else v)),
                       allowed="an integer > 0, or a list of them: steps per level of a nested "
                               "integrator, outermost first, one per force term of the theory"),
        "n_trajectories": Key("int", check=positive, allowed="an integer > 0"),
        "n_thermalization": Key("int", 0, check=lambda v: v >= 0, allowed="an integer >= 0"),
        "measure_every": Key("int", 1, check=positive, allowed="an integer > 0"),
        "batch": Key("int", 64, check=positive,
                     allowed="an integer > 0 (proposals per model evaluation)"),
        "hits": Key("int", 1, check=positive,
                    allowed="an integer > 0 (Metropolis updates per site or link and sweep)"),
        "width": Key("float", 1.0, check=positive,
                     allowed="a number > 0 (Metropolis proposals phi + width (2u - 1))"),
        "epsilon": Key("float", 0.01, check=positive,
                       allowed="a number > 0 (the Langevin time step)"),
        "metropolis": Key("bool", True),
    },
    "flow": {
        "coupling": Key("choice", "spline", choices=("affine", "spline", "ncp")),
        "n_layers": Key("int", 8, check=positive, allowed="an integer > 0"),
        "hidden": Key("int list", [8, 8], check=lambda v: all(x > 0 for x in v),
                      allowed="a list of positive channel counts, e.g. [8, 8]"),
        "kernel_size": Key("int", 3, check=lambda v: v > 0 and v % 2 == 1,
                           allowed="an odd integer > 0"),
        "bins": Key("int", 8, check=positive, allowed="an integer > 0 (spline only)"),
        "bound": Key("float", 4.0, check=positive, allowed="a number > 0 (spline only)"),
        "z2": Key("bool", True),
        "components": Key("int", 2, check=positive, allowed="an integer > 0 (ncp only)"),
        **_training_keys("flow", batch=32, batch_min=2, steps=5000),
    },
    "diffusion": {
        "data": Key("str", "", allowed="the configurations file of an ensemble to learn from"),
        "hidden": Key("int list", [32, 32], check=lambda v: all(x > 0 for x in v),
                      allowed="a list of positive widths, e.g. [32, 32]"),
        "ode_steps": Key("int", 40, check=positive, allowed="an integer > 0"),
        "t_min": Key("float", 1e-3, check=lambda v: 0 < v < 1, allowed="a number in (0, 1)"),
        "beta_min": Key("float", 0.1, check=positive, allowed="a number > 0"),
        "beta_max": Key("float", 20.0, check=positive, allowed="a number > 0"),
        **_training_keys("diffusion", batch=64, batch_min=1, steps=2000),
    },
    "output": {
        "file": Key("str", check=lambda v: v.strip() != "", allowed="a file name"),
        "overwrite": Key("bool", False),
        "progress_every": Key("int", 100, check=positive, allowed="an integer > 0"),
        "configurations": Key("str", "", allowed='a file name, or "" for none'),
        "save_every": Key("int", 1, check=positive, allowed="an integer > 0"),
    },
    "checkpoint": {
        "directory": Key("str", "", allowed='a directory name ("": next to the output '
                                                   'file, <file without .h5>.checkpoints)'),
        "every": Key("int", 100, check=positive, allowed="an integer > 0"),
        "keep": Key("int", 2, check=positive, allowed="an integer > 0"),
        "restart": Key("choice", "auto", choices=("auto", "never")),
        "walltime": Key("float", 0.0, check=lambda v: v >= 0,
                        allowed="seconds >= 0 (0: no limit)"),
        "margin": Key("float", 0.0, check=lambda v: v >= 0,
                      allowed="seconds >= 0 (0: automatic)"),
    },
    "run": {
        "seed": Key("int", check=lambda v: 0 <= v < 2**64, allowed="an integer in [0, 2^64)",
                    int_limit=2**64),
        "backend": Key("choice", "numpy", choices=("numpy", "cupy")),
        "dtype": Key("choice", "float64", choices=("float64", "float32")),
        "gpu_aware_mpi": Key("bool", False),
        "kernels": Key("choice", "auto", choices=("auto", "numpy", "compiled")),
        "start": Key("choice", "cold", choices=("cold", "hot", "file")),
        "start_file": Key("str", "", allowed="a configuration file (start = 'file'): "
                          "lqcdflow configurations (the last), ILDG or openQCD"),
    },
}


SECTIONS = ("lattice", "theory", "sampler", "flow", "diffusion", "output", "checkpoint", "run")
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "choice": str,
          "int list": list, "int list or auto": Any, "int or int list": Any}
_section_types = {}


def attribute_name(key):
    """The Python attribute of run-file key ``key``: the key, or ``key_`` for a Python keyword
    (``[theory] lambda`` is ``settings.theory.lambda_``)."""
    return key + "_" if keyword.iskeyword(key) else key


def _section(section, keys, values):
    """A frozen, typed object holding ``values`` of the keys ``keys`` of ``[section]``."""
    names = tuple(values)
    if (section, names) not in _section_types:
        fields = [(attribute_name(n), _TYPES[keys[n].kind]) for n in names]
        _section_types[section, names] = dataclasses.make_dataclass(
            f"{section.capitalize()}Settings", fields, frozen=True)
    return _section_types[section, names](**{attribute_name(n): v for n, v in values.items()})


def section_items(section):
    """{run-file key: value} of a section object."""
    def key(name):
        return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name
    return {key(f.name): getattr(section, f.name) for f in dataclasses.fields(section)}


@dataclass(frozen=True)
class Settings:
    """A validated run file: one typed, frozen section object per section.

    ``flow`` is None unless ``sampler.algorithm = "nmcmc"``, ``diffusion`` unless it is
    "diffusion". Sections are changed with :meth:`replace`, e.g.
    ``settings.replace("checkpoint", restart="never")``.
    """

    lattice: Any
    theory: Any
    sampler: Any
    output: Any
    checkpoint: Any
    run: Any
    flow: Any = None
    diffusion: Any = None

    @property
    def trained_name(self):
        """"flow" or "diffusion": the name (and section) of the trained model, or None."""
        return TRAINED_ALGORITHMS.get(self.sampler.algorithm)

    @property
    def trained(self):
        """The section of the trained model ([flow] or [diffusion]), or None."""
        return getattr(self, self.trained_name) if self.trained_name else None

    def sections(self):
        """{section name: {key: value}} of the sections present (the run file as read)."""
        return {name: section_items(getattr(self, name)) for name in SECTIONS
                if getattr(self, name) is not None}

    def replace(self, section, **values):
        """These settings with ``values`` changed in ``section``."""
        changed = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **{section: changed})


def validate(raw):
    """Check a parsed run file against the schema; return its Settings."""
    if not isinstance(raw, dict):
        raise ConfigError("run file must be a TOML table")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        shown = unknown[0] if unknown[0].isprintable() else repr(unknown[0])
        raise ConfigError(f"unknown section [{shown}]; allowed: "
                          + ", ".join(f"[{s}]" for s in SECTIONS))
    config = {}
    for section in SECTIONS:
        keys = SCHEMA.get(section) or _theory_keys(raw.get("theory"))
        given = raw.get(section)
        if given is None:
            if any(k.default is REQUIRED for k in keys.values()):
                raise ConfigError(f"missing section [{section}]")
            given = {}
        try:
            config[section] = validate_section(section, keys, given)
        except ConfigError as e:
            if section == "theory" and "unknown key" in str(e) and "name" not in given:
                raise ConfigError(f"{e} (theory '{theories.DEFAULT}': [theory] name is not "
                                  "given)") from None
            raise
    given = {section: raw.get(section, {}) for section in SECTIONS}
    _check_lattice(config["lattice"])
    ndim = len(config["lattice"]["shape"])
    theories.module(config["theory"]["name"]).check(config["theory"], given["theory"], ndim)
    _check_sampler(config["sampler"], given["sampler"])
    _only_for("run", config["run"], given["run"], ("start_file",), "start", "file")
    if config["run"]["start"] == "file" and not config["run"]["start_file"].strip():
        raise ConfigError("[run] start = 'file' needs start_file, the configuration to start "
                          "from")
    stem = os.path.splitext(config["output"]["file"])[0]
    if not config["checkpoint"]["directory"].strip():
        # each output file gets its own checkpoints, so that runs never mix by accident
        config["checkpoint"]["directory"] = stem + ".checkpoints"
    _check_algorithm(config)
    algorithm = config["sampler"]["algorithm"]
    for trained, section in TRAINED_ALGORITHMS.items():
        if algorithm == trained:
            _check_trained(section, trained, config[section], given[section],
                           config["theory"], config["lattice"]["shape"])
            if not config[section]["state"].strip():
                config[section]["state"] = f"{stem}.{section}.h5"
        elif section in raw:
            raise ConfigError(f"section [{section}] is only used by [sampler] algorithm = "
                              f"'{trained}'")
        else:
            del config[section]
    keys = {**SCHEMA, "theory": _theory_keys(raw.get("theory"))}
    return Settings(**{section: _section(section, keys[section], values)
                       for section, values in config.items()})


def _theory_keys(given):
    """The [theory] schema: ``name`` and the keys of the theory it names."""
    name_key = Key("choice", theories.DEFAULT, choices=tuple(theories.THEORIES))
    name = given.get("name", theories.DEFAULT) if isinstance(given, dict) else theories.DEFAULT
    if name not in theories.THEORIES:
        raise ConfigError(f"[theory] name = {name!r} is not allowed; expected "
                          f"{describe(name_key)}")
    return {"name": name_key, **theories.module(name).KEYS}


def _only_for(section, values, given, names, key, value):
    """Refuse keys ``names`` unless ``values[key] == value``; leave them out then."""
    if values[key] == value:
        return
    for name in names:
        if name in given:
            raise ConfigError(f"[{section}] key '{name}' is only used by {key} = '{value}'")
        del values[name]


def _check_sampler(sampler, given):
    algorithm = sampler["algorithm"]
    for name, algorithms in ALGORITHM_KEYS.items():
        if algorithm in algorithms:
            continue
        if name in given:
            used = " or ".join(f"'{a}'" for a in algorithms)
            raise ConfigError(f"[sampler] key '{name}' is only used by algorithm = {used}")
        del sampler[name]
    if sampler["algorithm"] == "hmc":
        if sampler["n_steps"] is None:
            raise ConfigError(f"[sampler] missing key 'n_steps' "
                              f"({describe(SCHEMA['sampler']['n_steps'])})")
        if "xi" in given and sampler["integrator"] != "omelyan2":
            raise ConfigError("[sampler] key 'xi' is only used by integrator = 'omelyan2'")
    if sampler["n_thermalization"] >= sampler["n_trajectories"]:
        raise ConfigError("[sampler] n_thermalization must be smaller than n_trajectories")


def _check_algorithm(config):
    """The theory is sampled by the algorithm; checkerboard sweeps need even extents."""
    name, algorithm = config["theory"]["name"], config["sampler"]["algorithm"]
    allowed = theories.module(name).ALGORITHMS
    if algorithm not in allowed:
        raise ConfigError(f"[theory] name = '{name}' cannot be used with algorithm = "
                          f"'{algorithm}'; it is sampled with "
                          + " or ".join(f"'{a}'" for a in allowed))
    if config["run"]["kernels"] == "compiled" and algorithm not in RUN_ALGORITHMS:
        raise ConfigError(f"[run] kernels = 'compiled' runs the molecular dynamics and the "
                          f"local updates; algorithm = '{algorithm}' has no compiled kernels: "
                          "use kernels = 'auto' or 'numpy'")
    shape = config["lattice"]["shape"]
    if algorithm in LOCAL_ALGORITHMS and any(n % 2 for n in shape):
        raise ConfigError(f"[lattice] shape {shape} has an odd extent: algorithm = "
                          f"'{algorithm}' updates the even, then the odd sites (a "
                          "checkerboard), which needs even extents")


def _check_trained(section, algorithm, values, given, theory, shape):
    """The [flow] or [diffusion] section of a trained model sampled by ``algorithm``: flows of
    phi^4 in either form (affine or spline couplings) or of 2D U(1) (ncp couplings, the
    extents multiples of 4: the masks' stripes), diffusion models of phi^4 in the standard
    form."""
    name = theory["name"]  # a theory with the algorithm in its ALGORITHMS (_check_algorithm)
    if section == "diffusion" and theory["form"] != "standard":
        raise ConfigError(f"[theory] form = '{theory['form']}' cannot be used with algorithm = "
                          f"'{algorithm}': diffusion models sample the standard form (m2, "
                          "lambda)")
    if name == "u1" and (len(shape) != 2 or any(n % 4 for n in shape)):
        raise ConfigError(f"[lattice] shape {shape} cannot be used with algorithm = "
                          f"'{algorithm}': U(1) flows need a 2D lattice with extents that "
                          "are multiples of 4")
    if section == "flow":
        _check_coupling(values, given, name)
    if section == "diffusion" and not values["data"].strip():
        raise ConfigError("[diffusion] missing key 'data' (the configurations file of an "
                          "ensemble to learn from, e.g. an HMC run's [output] configurations)")
    for name, (key, value) in FLOW_ONLY.items():
        if name in values or name in given:
            _only_for(section, values, given, (name,), key, value)
    if values["schedule"] == "cosine" and values["lr_min"] > values["learning_rate"]:
        raise ConfigError(f"[{section}] lr_min = {values['lr_min']} exceeds learning_rate = "
                          f"{values['learning_rate']}")


def _check_coupling(values, given, name):
    """[flow] coupling: one of the theory's (its default if not given); z2 for phi^4 only."""
    allowed = theories.module(name).FLOW_COUPLINGS
    if "coupling" not in given:
        values["coupling"] = allowed[0]
    elif values["coupling"] not in allowed:
        raise ConfigError(f"[flow] coupling = '{values['coupling']}' cannot be used with "
                          f"[theory] name = '{name}': expected "
                          f"{' or '.join(repr(c) for c in allowed)}")
    if name != "phi4":
        # U(1) splines span the circle [-pi, pi): no bound
        for key in ("z2", "bound"):
            if key in given:
                raise ConfigError(f"[flow] key '{key}' is only used by [theory] name = 'phi4'")
            values.pop(key, None)


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
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ConfigError(f"run file {source} nests arrays or tables too deeply to be a run "
                          "file") from None
    return validate(raw)
