"""Readers: every trajectory format becomes one :class:`~egraff_lmp.trajectory.Trajectory`.

``read_trajectory(path, format=None, **options)`` picks the reader by ``format`` or, when
it is None, by the path (a directory with ``type.raw`` is DeePMD; ``.npz``; ``.xyz``/
``.extxyz``; a file starting with ``ITEM: TIMESTEP`` is a LAMMPS dump). Options a reader does
not use are ignored, so one set of CLI options serves every format:

- ``types`` (list of element symbols, LAMMPS type 1 first), ``data`` (LAMMPS data file),
  ``log`` (LAMMPS log for energies), ``log_column``, ``energy_column``, ``timestep`` (fs):
  LAMMPS dumps;
- ``energy_key``, ``forces_key``: extxyz and npz.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import located
from ..trajectory import Trajectory
from .deepmd import DeepmdTrajectory, looks_like_deepmd
from .extxyz import ExtxyzTrajectory
from .lammps_dump import LammpsDumpTrajectory, looks_like_dump
from .npz import NpzTrajectory

FORMATS: dict[str, type[Trajectory]] = {
    "lammps-dump": LammpsDumpTrajectory,
    "extxyz": ExtxyzTrajectory,
    "npz": NpzTrajectory,
    "deepmd": DeepmdTrajectory,
}

_SUFFIXES = {
    ".npz": "npz",
    ".xyz": "extxyz",
    ".extxyz": "extxyz",
    ".lammpstrj": "lammps-dump",
    ".dump": "lammps-dump",
}


def detect_format(path) -> str:
    """The format name of ``path``, from its kind, suffix or first line."""
    p = Path(path)
    if not p.exists():
        raise located(path, "no such file or directory")
    if p.is_dir():
        if looks_like_deepmd(p):
            return "deepmd"
        raise located(path, "a directory that is not a DeePMD system (no type.raw)")
    if os.path.getsize(p) == 0:
        raise located(path, "empty file")
    if looks_like_dump(p):
        return "lammps-dump"
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise located(path, f"cannot tell the format; give --format ({', '.join(FORMATS)})")
    return fmt


def read_trajectory(path, format: str | None = None, **options) -> Trajectory:
    """Open ``path`` as a :class:`Trajectory` (frames are read lazily)."""
    path = os.fspath(path)
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise located(path, f"unknown format '{format}' (known: {', '.join(FORMATS)})")
    elif not os.path.exists(path):
        raise located(path, "no such file or directory")
    elif os.path.isfile(path) and os.path.getsize(path) == 0:
        raise located(path, "empty file")
    return FORMATS[format](path, **{k: v for k, v in options.items() if v is not None})


__all__ = ["FORMATS", "detect_format", "read_trajectory"]
