"""Flow parameters and Adam state in an HDF5 file, independent of the decomposition.

The parameters (and the optimiser state) are replicated on every rank, so rank 0 of the
lattice communicator writes them with plain h5py (no pickle, no torch.save), and a file written
on any number of ranks loads on any other number. Layout::

    /                       attrs: format ("lqcdflow-flow-state"), step, dtype ("float64"
                            or "float32"), the FlowSpec (shape, n_layers, hidden, ...) and
                            state_sha256, the SHA-256 of everything else in the file
                            (checked on load: a flipped byte anywhere is refused);
                            training_data, for a model learnt from an ensemble, what
                            identifies its configurations (:func:`training_data_of`)
    /parameters/<name>      one dataset per entry of flow.state_dict()
    /optimizer              attrs: lr, betas, eps, weight_decay, amsgrad
    /optimizer/<i>/<key>    Adam state of parameter i (in flow.parameters() order):
                            step, exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad)

The attributes of :class:`FlowSpec` identify the architecture and the target; loading into a
different one raises a ValueError naming the differing attributes. The dtype is the flow's
(its prior's, which its parameters follow); files written before it was recorded have the
dtype of their parameter datasets. Loading into a flow of another dtype is refused unless
asked for (``convert_dtype``): training continued in another precision would not continue the
run it came from, while a trained flow may well be sampled from in another one.
"""

from dataclasses import MISSING, asdict, dataclass, fields

import h5py
import numpy as np
import torch

from lqcdflow.flows.layers import affine_couplings
from lqcdflow.flows.model import Flow
from lqcdflow.flows.prior import GaussianPrior
from lqcdflow.flows.spline import spline_couplings
from lqcdflow.flows.torch_lattice import TorchLattice
from lqcdflow.io import flow_states
from lqcdflow.io.files import READ_ERRORS, reason
from lqcdflow.theories.phi4 import FLOW_COUPLINGS, Phi4, Phi4Couplings

_ADAM_HYPER = ("lr", "betas", "eps", "weight_decay", "amsgrad")


@dataclass(frozen=True)
class FlowSpec:
    """Architecture of a flow of coupling layers and its target phi^4 couplings.

    Attributes
    ----------
    shape : tuple of int
        Global lattice shape.
    n_layers : int
    hidden : tuple of int
        Hidden channels of each conditioner.
    kernel_size : int
    m2, lam : float
        Couplings of the target action: (m^2, lambda) of the standard form, or with
        ``form = "hopping"`` m2 None and lam the hopping form's lambda (with ``kappa``).
    seed : int
        Seed of the Gaussian prior.
    coupling : str
        "affine" (:func:`~lqcdflow.flows.layers.affine_couplings`) or "spline"
        (:func:`~lqcdflow.flows.spline.spline_couplings`).
    bins, bound : int, float
        Bins K and interval [-B, B] of the spline couplings.
    z2 : bool
        Z2-equivariant layers (:class:`~lqcdflow.flows.layers.Coupling`).
    form : str
        "standard" or "hopping" (:mod:`lqcdflow.theories.phi4`): the flow samples the field of
        that form, phi_hop = phi_std / sqrt(kappa).
    kappa : float or None
        The hopping parameter (``form = "hopping"``; None in the standard form).
    """

    shape: tuple
    n_layers: int
    hidden: tuple
    kernel_size: int
    m2: float
    lam: float
    seed: int
    coupling: str = "affine"
    bins: int = 8
    bound: float = 5.0
    z2: bool = False
    form: str = "standard"
    kappa: float = None

    def __post_init__(self):
        if self.coupling not in FLOW_COUPLINGS:
            raise ValueError(f"coupling must be one of {', '.join(FLOW_COUPLINGS)}, "
                             f"got {self.coupling!r}")
        used = {"standard": "m2", "hopping": "kappa"}.get(self.form)
        if used is None:
            raise ValueError(f"form must be 'standard' or 'hopping', got {self.form!r}")
        unused = "kappa" if used == "m2" else "m2"
        if getattr(self, used) is None or getattr(self, unused) is not None:
            raise ValueError(f"the {self.form} form needs {used} and no {unused}")

    def memory_needed(self, local_volume, batch, itemsize, training):
        """Bytes per rank a batch of ``batch`` through the flow needs at least, with
        ``local_volume`` sites per rank and ``itemsize`` bytes per number.

        Every hidden channel of every site is a number per configuration: training keeps
        those of all layers for the backward pass, n_layers sum(hidden); sampling only holds
        the widest convolution's input and output, 2 max(hidden). Plus the batch's fields
        (2 per site: phi and the layer's output).
        """
        channels = (self.n_layers * sum(self.hidden) if training
                    else 2 * max(self.hidden)) + 2
        return batch * local_volume * itemsize * channels

    def layers(self, lattice):
        """The coupling layers on ``lattice`` (torch's default initialisation)."""
        if self.coupling == "affine":
            return affine_couplings(lattice, self.n_layers, tuple(self.hidden), self.kernel_size,
                                    self.z2)
        return spline_couplings(lattice, self.n_layers, self.bins, self.bound,
                                tuple(self.hidden), self.kernel_size, self.z2)

    def build(self, lattice, init_seed=0, dtype=torch.float64, device="cpu"):
        """The flow on ``lattice`` (:func:`build_flow`, the Gaussian prior)."""
        return build_flow(self, lattice, GaussianPrior, init_seed, dtype, device)

    def attrs(self):
        """The spec as HDF5 attribute values."""
        return spec_attrs(self)

    def theory(self, lattice):
        """The target phi^4 theory, of the spec's form, on ``lattice``."""
        return Phi4(lattice, Phi4Couplings.of_form(self.form, self.kappa, self.m2, self.lam,
                                                   lattice.ndim))

    def target(self, lattice):
        """The target theory on ``TorchLattice(lattice)``: S = ``target.action(phi)`` per
        sample of a batch, the density the model is trained for and corrected to."""
        return self.theory(TorchLattice(lattice))


def build_flow(spec, lattice, prior, init_seed, dtype, device):
    """Flow(prior(lattice, spec.seed), spec.layers(lattice)) in ``dtype`` on ``device``, the
    layers initialised by torch's default init after ``torch.manual_seed(init_seed)`` (the
    same on every rank; the global RNG state restored)."""
    if tuple(lattice.shape) != tuple(spec.shape):
        raise ValueError(f"lattice shape {lattice.shape} differs from the spec's "
                         f"{tuple(spec.shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        layers = spec.layers(lattice)
    return Flow(prior(lattice, spec.seed, dtype=dtype, device=device),
                layers).to(dtype=dtype, device=device)


def standard_phi4(lattice, m2, lam):
    """phi^4 of the standard form (m^2, lambda) on ``lattice`` (a Lattice or TorchLattice)."""
    return Phi4(lattice, Phi4Couplings.standard(m2, lam, lattice.ndim))


def spec_attrs(spec):
    """A model's spec (a dataclass) as HDF5 attribute values (:func:`_attr_value`)."""
    return {key: _attr_value(value) for key, value in asdict(spec).items()}


def _attr_value(value):
    """A spec field's value as an HDF5 attribute: a tuple as an int64 array, None as "" (as in
    the run attributes of an ensemble)."""
    if isinstance(value, tuple):
        return np.asarray(value, dtype=np.int64)
    return "" if value is None else value


def _stored_spec(f, spec):
    """The spec attributes of an open state file; a field added to the spec after the file
    was written reads as its default (what files written before it meant)."""
    defaults = {field.name: _attr_value(field.default) for field in fields(spec)
                if field.default is not MISSING}
    return {key: f.attrs[key] if key in f.attrs else defaults[key] for key in spec.attrs()}


def _shown(value):
    """An attribute value as an error message shows it ("" of None as "none")."""
    value = np.asarray(value).tolist()
    return "none" if value == "" else value


def _single_group(optimizer):
    if len(optimizer.param_groups) != 1:
        raise ValueError("only optimisers with one parameter group are supported")
    return optimizer.param_groups[0]


def save_state(path, flow, optimizer, step, spec, comm, training_data=None):
    """Write the flow parameters, the Adam state and ``step`` (and ``training_data``, a string
    that identifies the configurations learnt from, if given) to ``path`` (collective).

    Rank 0 of ``comm`` writes; all ranks return after the file is complete.
    """
    if comm.Get_rank() == 0:
        group = _single_group(optimizer)
        params = list(flow.parameters())
        with h5py.File(path, "w") as f:
            f.attrs["format"] = flow_states.FORMAT
            f.attrs["step"] = int(step)
            f.attrs["dtype"] = dtype_name(flow.prior.dtype)
            for key, value in spec.attrs().items():
                f.attrs[key] = value
            if training_data is not None:
                f.attrs["training_data"] = training_data
            pars = f.create_group("parameters")
            for name, tensor in flow.state_dict().items():
                pars[name] = tensor.detach().cpu().numpy()
            opt = f.create_group("optimizer")
            for key in _ADAM_HYPER:
                opt.attrs[key] = group[key]
            for i, p in enumerate(params):
                entry = opt.create_group(str(i))
                for key, value in optimizer.state.get(p, {}).items():
                    entry[key] = torch.as_tensor(value).detach().cpu().numpy()
            flow_states.seal(f)
    comm.Barrier()


def training_data_of(path, comm):
    """The ``training_data`` string of the state file at ``path``, or None if it has none
    (rank 0 reads, every rank returns it). Call after :func:`load_state` has checked the
    file."""
    value = None
    if comm.Get_rank() == 0:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("training_data")
    value = comm.bcast(value, root=0)
    return None if value is None else str(value)


def dtype_name(dtype):
    """"float64" for torch.float64 (the name of [run] dtype and of NumPy)."""
    return str(dtype).removeprefix("torch.")


def _file_dtype(f, params):
    """The dtype name of an open state file (see the module docstring); None if it holds no
    parameters to tell."""
    if "dtype" in f.attrs:
        return str(f.attrs["dtype"])
    return str(next(iter(params.values())).dtype) if params else None


def _read(path, spec):
    """(step, dtype name, parameters, hyperparameters, per-parameter state) from ``path``,
    after checking the spec."""
    with h5py.File(path, "r") as f:
        if not flow_states.intact(f):
            raise ValueError(f"flow state {path} is damaged (checksum mismatch); lqcdflow info "
                             "tells more")
        stored = _stored_spec(f, spec)
        wrong = [f"{key}: file {_shown(stored[key])}, expected {_shown(value)}"
                 for key, value in spec.attrs().items()
                 if not np.array_equal(np.asarray(stored[key]), np.asarray(value))]
        if wrong:
            raise ValueError(f"{path} holds a different flow: " + "; ".join(wrong))
        params = {name: f["parameters"][name][()] for name in f["parameters"]}
        opt = f["optimizer"]
        hyper = {key: opt.attrs[key] for key in _ADAM_HYPER}
        state = {int(i): {key: opt[i][key][()] for key in opt[i]} for i in opt}
        return int(f.attrs["step"]), _file_dtype(f, params), params, hyper, state


def load_state(path, flow, optimizer, spec, comm, convert_dtype=False):
    """Load what :func:`save_state` wrote into ``flow`` and ``optimizer``.

    Rank 0 of ``comm`` reads and broadcasts, so any number of ranks (any decomposition) can
    load. ``optimizer`` must be an Adam over ``flow.parameters()`` with one parameter group.
    Raises ValueError (on every rank) if the file's spec or parameter shapes differ, or if its
    dtype is not the flow's and ``convert_dtype`` is false (with it, the parameters and Adam
    moments are converted to the flow's dtype).

    Returns
    -------
    (int, str)
        The training step and the file's dtype name ("float64" or "float32").
    """
    payload = None
    if comm.Get_rank() == 0:
        try:
            payload = _read(path, spec)
        except ValueError as err:
            payload = err
        except READ_ERRORS as err:
            payload = ValueError(f"flow state {path} is unreadable ({reason(err)})")
    payload = comm.bcast(payload, root=0)
    if isinstance(payload, Exception):
        raise ValueError(str(payload)) from payload
    step, dtype, params, hyper, state = payload
    wanted = dtype_name(flow.prior.dtype)
    if dtype not in (None, wanted) and not convert_dtype:
        raise ValueError(f"{path} holds a {dtype} flow, not {wanted}: training continues "
                         "only in the precision it started in")
    own = flow.state_dict()
    if set(params) != set(own) or any(params[k].shape != tuple(own[k].shape) for k in own):
        raise ValueError(f"{path}: parameter names or shapes differ from the flow's")
    flow.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    group = _single_group(optimizer)
    for key in _ADAM_HYPER:
        value = hyper[key]
        group[key] = tuple(float(b) for b in value) if key == "betas" else value.item()
    optimizer.state.clear()
    for i, p in enumerate(flow.parameters()):
        if state.get(i):
            optimizer.state[p] = {
                key: (torch.tensor(float(v)) if key == "step"
                      else torch.from_numpy(v).to(dtype=p.dtype, device=p.device))
                for key, v in state[i].items()}
    return step, dtype or wanted
