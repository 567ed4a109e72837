"""``lqcdflow measure``: the theory's observables on the configurations a run stored.

For measurements too costly for every trajectory, above all the Wilson flow of SU(N) runs
(``[theory] flow_t_max``): the run stores configurations (``[output] configurations``,
``save_every``), and this command reads them one at a time on any number of ranks, verifies
each one's checksum, measures it with the run file's theory and writes an ensemble file that
holds the observables (no Monte Carlo record), for ``lqcdflow analyze``. The run file may
differ from the run's in what is only measured (the theory module's ``MEASUREMENT_KEYS``,
e.g. the flow time), not in what defines the ensemble.
"""

from lqcdflow import build, theories
from lqcdflow.config import ConfigError
from lqcdflow.io.configurations import ConfigurationReader
from lqcdflow.io.ensemble import EnsembleWriter, run_attributes
from lqcdflow.io.locks import WriterLock
from lqcdflow.mc.hmc import memory_needed
from lqcdflow.parallel import memory

COMMIT_EVERY = 10  # configurations measured between commits of the output


def _check_same_ensemble(config, stored):
    """ConfigError unless the configurations file's run attributes ``stored`` agree with the
    run file on the lattice and on every theory key that is not only measured."""
    module = theories.module(config.theory.name)
    measured_only = getattr(module, "MEASUREMENT_KEYS", ())
    sections = config.sections()
    wanted = {"lattice.shape": list(config.lattice.shape)}
    wanted.update({f"theory.{key}": value for key, value in sections["theory"].items()
                   if key not in measured_only})
    for key, value in wanted.items():
        there = stored.get(key)
        there = there.tolist() if hasattr(there, "tolist") else there
        if there != ("" if value is None else value):
            raise ConfigError(f"the configurations were made with {key} = {there!r}, the run "
                              f"file says {value!r}")


def measure_configurations(config, run_file_text, comm, output, overwrite=False, say=None):
    """Measure every configuration of the run file's ``[output] configurations`` into the
    ensemble file ``output``; returns the exit code (0)."""
    source = config.output.configurations
    if not source:
        raise ConfigError("[output] configurations is not set: the run stored no "
                          "configurations to measure")
    lattice = build.make_lattice(config, comm)
    theory = build.make_theory(config, lattice)
    memory.check(lattice, memory_needed(theory), f"measuring {config.theory.name}")
    with WriterLock(theory.lattice.comm, [(output, "output file")]), \
            ConfigurationReader(source, theory) as reader:
        _check_same_ensemble(config, reader.attrs)
        attrs = {**run_attributes(config, theory, run_file_text), "measured_from": source}
        writer = EnsembleWriter(output, attrs, theory.observables, comm, overwrite=overwrite)
        if say:
            say(f"measuring {reader.count} configurations of {source} with "
                f"{theory.describe()}")
        for index in range(reader.count):
            field, trajectory = reader.read(index)
            writer.record_measurement(trajectory, theory.measure(field))
            if (index + 1) % COMMIT_EVERY == 0 or index + 1 == reader.count:
                writer.commit()
                if say:
                    say(f"configuration {index + 1:>6d}/{reader.count} (trajectory "
                        f"{trajectory}) measured")
        writer.close()
    return 0
