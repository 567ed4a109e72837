"""Generated bad inputs (Hypothesis): run files for every command and section, and a flipped
bit anywhere in every kind of file lqcdflow writes.

Run files: every mutation of a valid run file is either valid or refused with one line
(ConfigError in-process; through the commands: exit 2, one ``lqcdflow: error:`` line, no
traceback, nothing created, also under mpiexec). Files: after any single flipped bit, either
everything lqcdflow reads from the file is unchanged (the bit was in free space or in what the
readers never look at), or ``lqcdflow info`` reports the damage; and a run asked to extend a
damaged ensemble refuses without changing a byte of it. Examples are derandomised, so CI
sees the same ones every time.
"""

import math
import os
import tomllib

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from runs import FLOW_RUN_FILE, RUN_FILE, U1_RUN_FILE, flow_run, lqcdflow, write_run_file

from lqcdflow.config import SCHEMA, SECTIONS, ConfigError, parse, validate
from lqcdflow.io import checksum, probe
from lqcdflow.io.ensemble import GROUPS, last_commit
from lqcdflow.io.info import InfoError, inspect

TEMPLATES = {"phi4": RUN_FILE, "u1": U1_RUN_FILE, "flow": FLOW_RUN_FILE}
FAST = dict(derandomize=True, database=None, deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture,
                                   HealthCheck.too_slow, HealthCheck.filter_too_much])


def base(kind, directory="/nonexistent"):
    text = TEMPLATES[kind].format(out=f"{directory}/r.h5", checkpoints=f"{directory}/r.ck",
                                  n_trajectories=20, every=10)
    return tomllib.loads(text)


# ---------------------------------------------------------------------- generated run files
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # TOML is Unicode
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(["auto", "hmc", "nmcmc", "hot", "file", "float32", "cupy", "spline"]),
)
toml_values = st.one_of(
    toml_scalars,
    st.lists(st.one_of(st.integers(min_value=-3, max_value=2**65), st.floats()), max_size=4),
    st.dictionaries(texts, st.integers(), max_size=2),
)
KNOWN_KEYS = sorted({key for keys in SCHEMA.values() for key in keys}
                    | {"name", "form", "kappa", "m2", "lambda", "beta", "flow_t_max"})


@st.composite
def mutated_run_files(draw, kinds=tuple(TEMPLATES)):
    """A valid run file (as a dict) with one to three keys set to arbitrary TOML values,
    deleted, or whole sections deleted or replaced."""
    raw = base(draw(st.sampled_from(kinds)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        section = draw(st.sampled_from(SECTIONS + ("bogus",)))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "drop section",
                                       "replace section"]))
        if action == "drop section":
            raw.pop(section, None)
        elif action == "replace section":
            raw[section] = draw(toml_values)
        else:
            table = raw.setdefault(section, {})
            if not isinstance(table, dict):
                continue
            key = draw(st.one_of(st.sampled_from(KNOWN_KEYS), texts.filter(bool)))
            if action == "delete":
                table.pop(key, None)
            else:
                table[key] = draw(toml_values)
    return raw


def toml_text(raw):
    """TOML text of a run-file dict (tables of scalars, lists and inline tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") \
                if math.isinf(v) else repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, str):
            return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}"
                                 for c in v) + '"'
        return str(v)

    def key(k):
        return k if k and all(c.isalnum() or c in "_-" for c in k) and k.isascii() \
            else value(k)

    lines = []
    for section, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{key(section)}]")
            lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
        else:
            lines.insert(0, f"{key(section)} = {value(table)}")
    return "\n".join(lines) + "\n"


def one_line(message):
    return "\n" not in message and message.strip() == message and message


@settings(max_examples=600, **FAST)
@given(mutated_run_files())
def test_a_mutated_run_file_is_valid_or_refused_in_one_line(raw):
    try:
        validate(raw)
    except ConfigError as e:
        assert one_line(str(e)), str(e)


@settings(max_examples=300, **FAST)
@given(st.text(max_size=200))
def test_any_text_is_a_run_file_or_refused_in_one_line(text):
    try:
        parse(text, "x.toml")
    except ConfigError as e:
        assert one_line(str(e)), str(e)


def _canonical(value):
    """``value`` with tables sorted and floats as their repr (so that nan equals nan)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    return repr(value) if isinstance(value, float) else value


@settings(max_examples=100, **FAST)
@given(mutated_run_files())
def test_the_toml_text_of_a_mutation_reads_back(raw):
    """What the commands read is the dict the tests generated."""
    assert _canonical(tomllib.loads(toml_text(raw))) == _canonical(raw)


def _refused_by(args, directory, ranks=None):
    before = sorted(os.listdir(directory))
    result = lqcdflow(args, ranks=ranks)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lqcdflow: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert sorted(os.listdir(directory)) == before


def _invalid(raw):
    try:
        validate(raw)
    except ConfigError:
        return True
    return False


@pytest.mark.parametrize("kinds, commands, ranks", [
    (("phi4", "u1"), (("run",), ("measure", "m.h5"), ("status",)), None),
    (("flow",), (("train",), ("sample",), ("status", "--train")), None),
    (("phi4", "u1"), (("run",),), 2),
])
def test_every_command_refuses_generated_bad_run_files(tmp_path_factory, kinds, commands,
                                                       ranks):
    @settings(max_examples=4, **FAST)
    @given(mutated_run_files(kinds))
    def check(raw):
        assume(_invalid(raw))
        directory = tmp_path_factory.mktemp("bad")
        run = directory / "bad.toml"
        run.write_text(toml_text(raw))
        for command in commands:
            _refused_by([command[0], str(run), *command[1:]], directory, ranks)

    check()


# ---------------------------------------------------------------------- flipped bits
def _read_back(path):
    """("ok", content) of a possibly damaged file, or ("error", what went wrong), read in a
    child: libhdf5 may crash or hang on it."""
    try:
        return "ok", probe.isolated(content, path)
    except Exception as e:
        return "error", repr(e)


def content(path):
    """Everything lqcdflow's readers take from an HDF5 file: every attribute but the hash of
    the attributes (which protects, not informs), and every dataset's values, of an ensemble's
    series only the committed rows (the rest is free space)."""
    out = {}
    with h5py.File(path, "r") as f:
        commit = last_commit(f) if "committed" in f else None

        def attributes(name, node):
            for key in node.attrs:
                if not (name == "/" and key == checksum.ATTRIBUTES_HASH):
                    out[f"{name}@{key}"] = repr(np.asarray(node.attrs[key]).tolist())

        def visit(name, node):
            attributes(name, node)
            if isinstance(node, h5py.Dataset):
                rows = None
                if commit is not None and name.split("/")[0] in GROUPS:
                    rows = commit.lengths[name.split("/")[0]]
                elif commit is not None and name == "committed/log":
                    rows = commit.row + 1
                out[name] = (node[:rows] if rows is not None else node[()]).tobytes()

        attributes("/", f)
        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """{kind: path} of one file of each kind: ensemble, configurations, checkpoint, flow
    state."""
    directory = tmp_path_factory.mktemp("files")
    run = write_run_file(directory / "u.toml", n_trajectories=20, text=U1_RUN_FILE)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    flow = flow_run(directory / "f.toml")
    assert lqcdflow(["train", "-q", str(flow)]).returncode == 0
    return {"ensemble": directory / "u.h5", "configurations": directory / "u.h5.configs.h5",
            "checkpoint": directory / "u.ck" / "checkpoint_00000020.h5",
            "flow state": directory / "f.flow.h5"}


def _flipped(path, offset, bit, target):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 1 << bit
    target.write_bytes(data)
    return target


def _detected(path):
    try:
        return bool(inspect(str(path))[1])
    except InfoError:
        return True


@pytest.fixture
def quick_probe(monkeypatch):
    """A damaged file can make libhdf5 loop forever: give up on it after 10 s."""
    monkeypatch.setattr(probe, "TIMEOUT", 10.0)


@pytest.mark.parametrize("kind", ["ensemble", "configurations", "checkpoint", "flow state"])
def test_a_flipped_bit_is_harmless_or_found(written, kind, tmp_path, quick_probe):
    original = written[kind]
    reference = content(original)
    assert not _detected(original)

    @settings(max_examples=150, **FAST)
    @given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=7))
    def check(offset, bit):
        damaged = _flipped(original, offset, bit, tmp_path / "damaged.h5")
        read = _read_back(damaged)
        assert _detected(damaged) or read == ("ok", reference), (offset, bit, read)

    check()


@pytest.mark.parametrize("ranks", [None, 2])
def test_a_run_never_extends_a_damaged_ensemble(written, tmp_path_factory, ranks):
    original = written["ensemble"]

    @settings(max_examples=3, **FAST)
    @given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=7))
    def check(offset, bit):
        directory = tmp_path_factory.mktemp("extend")
        out = _flipped(original, offset, bit, directory / "u.h5")
        assume(_detected(out))
        damaged = out.read_bytes()
        ck = directory / "u.ck"
        ck.mkdir()
        for path in written["checkpoint"].parent.glob("checkpoint_*.h5"):
            (ck / path.name).write_bytes(path.read_bytes())
        run = write_run_file(directory / "u.toml", n_trajectories=30, text=U1_RUN_FILE,
                             **{"configurations = ": "# configurations = "})
        result = lqcdflow(["run", "-q", str(run)], ranks=ranks)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert out.read_bytes() == damaged

    check()
