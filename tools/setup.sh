#!/usr/bin/env bash
# Set up everything lqcdflow needs on a Debian 12 machine, idempotently: each step is skipped
# when what it installs is already there.
#   - compilers, MPICH, parallel HDF5 (mpich flavour), pkg-config, shellcheck from Debian;
#   - a virtual environment ($LQCDFLOW_VENV, default ~/.venvs/lqcdflow) with mpi4py built
#     against the system MPICH, parallel h5py, torch (CPU), numba, pyerrors, pytest, pytest-mpi,
#     scipy, hypothesis;
#   - lqcdflow itself, installed editable from this checkout;
#   - a second virtual environment ($LQCDFLOW_INTEROP_VENV, default ~/.venvs/lqcdflow-interop)
#     with lyncs-io, the independent ILDG/openQCD reader of the interoperability tests.
# Usage: bash tools/setup.sh        (then: source "$LQCDFLOW_VENV/bin/activate")
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${LQCDFLOW_VENV:-$HOME/.venvs/lqcdflow}
log() { printf '[setup] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(build-essential mpich libhdf5-mpich-dev pkg-config shellcheck python3-dev python3-venv)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    log "creating virtual environment $venv"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }
have() { "$py" -c "$1" >/dev/null 2>&1; }

if ! have "import setuptools, Cython, pkgconfig, numpy"; then
    log "pip install build requirements"
    pip install -U setuptools Cython pkgconfig numpy wheel
fi
# mpi4py must link the system MPICH (the binary wheel looks for another libmpi); -O1 because
# -O3 makes the compiler use >15 min and ~20 GB on MPI.c.
if ! have "from mpi4py import MPI"; then
    log "building mpi4py against the system MPICH (~2 min)"
    MPICC=mpicc CFLAGS=-O1 pip install --no-binary=mpi4py mpi4py
fi
# --no-build-isolation: otherwise pip builds a second mpi4py inside the isolated build.
if ! have "import h5py; assert h5py.get_config().mpi"; then
    log "building parallel h5py against HDF5-mpich (~1.5 min)"
    pip uninstall -y h5py >/dev/null 2>&1 || true
    CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich CFLAGS=-O1 \
        pip install --no-binary=h5py --no-build-isolation h5py
fi
if ! have "import torch"; then
    log "pip install torch==2.13.0 (CPU)"
    pip install torch==2.13.0
fi
# numba: the compiled molecular-dynamics kernels on CPUs (lqcdflow.kernels)
if ! have "import numba"; then
    log "pip install numba"
    pip install numba
fi
# scipy: the tests' independent references (expm for the SU(3) exponential, Bessel functions);
# hypothesis: the robustness suite's generated bad inputs (tests/test_robustness.py)
if ! have "import pyerrors, pytest, pytest_mpi, matplotlib, scipy.linalg, hypothesis"; then
    log "pip install pyerrors pytest pytest-mpi matplotlib scipy hypothesis"
    pip install pyerrors pytest pytest-mpi matplotlib scipy hypothesis
fi
# A second environment for the interoperability tests: lyncs-io, an independent reader of ILDG
# and openQCD files, needs numpy < 2 (and lyncs_cppyy for openQCD's layout).
interop=${LQCDFLOW_INTEROP_VENV:-$HOME/.venvs/lqcdflow-interop}
if ! "$interop/bin/python" -c "import lyncs_io, lyncs_cppyy" >/dev/null 2>&1; then
    log "creating $interop with lyncs-io (interoperability tests)"
    "$python" -m venv "$interop"
    "$interop/bin/python" -m pip --disable-pip-version-check -q install "numpy<2" lyncs-io \
        lyncs_cppyy
fi
# Checked from / so that the checkout itself is not what gets imported.
installed_from=$(cd / && "$py" -c 'import lqcdflow, os; print(os.path.dirname(os.path.dirname(lqcdflow.__file__)))' 2>/dev/null) \
    || installed_from=
if [ ! -x "$venv/bin/lqcdflow" ] || [ "$installed_from" != "$repo" ]; then
    log "pip install -e $repo"
    pip install --no-build-isolation --no-deps -e "$repo"
fi
"$py" -c "import h5py; from mpi4py import MPI; assert h5py.get_config().mpi" \
    || { log "error: parallel h5py / mpi4py check failed"; exit 1; }
log "ready: source $venv/bin/activate"
