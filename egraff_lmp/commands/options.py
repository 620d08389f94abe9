"""Options that several commands share: reading trajectories, RDF bins and frames."""

from __future__ import annotations

import argparse


def _types(text: str) -> list[str]:
    """``Ge,Te`` → ["Ge", "Te"]; the reader checks that they are elements."""
    return [t.strip() for t in text.split(",") if t.strip()]


#: The reader options' names as ``argparse`` stores them (without a prefix), in one place so
#: that a command deriving one file's options from another's (``compare --ref-*``) sees them all.
READER_FIELDS = ("format", "types", "data", "log", "log_column", "energy_column", "units",
                 "energy_key", "forces_key")


def reader_options(p: argparse.ArgumentParser, prefix: str = "", who: str = "") -> None:
    g = p.add_argument_group(f"reading {who}".strip())
    g.add_argument(f"--{prefix}format", help="lammps-dump, extxyz, npz or deepmd "
                   "(default: from the file)")
    g.add_argument(f"--{prefix}types", type=_types, metavar="A,B,...",
                   help="elements of LAMMPS types 1, 2, ... of a dump")
    g.add_argument(f"--{prefix}data", metavar="DATAFILE",
                   help="LAMMPS data file whose Masses name the dump's types")
    g.add_argument(f"--{prefix}log", metavar="LOG",
                   help="LAMMPS log whose thermo gives each dump frame's energy (eV)")
    g.add_argument(f"--{prefix}log-column", metavar="COL",
                   help="thermo column of the energy in --log (default PotEng)")
    g.add_argument(f"--{prefix}energy-column", metavar="COL",
                   help="per-atom dump column (e.g. c_pe) summed into each frame's energy")
    g.add_argument(f"--{prefix}units", metavar="STYLE",
                   help="LAMMPS unit style a dump was written in (default metal; real, si, "
                        "cgs, electron, micro, nano are converted to Å, eV/Å and eV)")
    g.add_argument(f"--{prefix}energy-key", metavar="KEY",
                   help="energy key of extxyz info / npz (default energy)")
    g.add_argument(f"--{prefix}forces-key", metavar="KEY",
                   help="forces key of extxyz arrays / npz (default forces)")


def open_trajectory(args, path, prefix=""):
    from ..io import read_trajectory

    def opt(name):
        return getattr(args, prefix + name)

    return read_trajectory(path, **{name: opt(name) for name in READER_FIELDS})


def rdf_options(p):
    g = p.add_argument_group("RDF and frames")
    g.add_argument("--rmax", type=float, help="Å; default min(10, half the smallest cell width)")
    g.add_argument("--dr", type=float, default=0.05, help="bin width, Å (default 0.05)")
    g.add_argument("--start", type=int, help="first frame (0-based, Python slice)")
    g.add_argument("--stop", type=int, help="frame to stop before")
    g.add_argument("--step", type=int, help="use every STEP-th frame")
    g.add_argument("--threads", type=int, default=0,
                   help="threads of the neighbour search (default 0: vesin's choice)")
    g.add_argument("--progress", action="store_true", help="show a progress bar")


def outputs(p):
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--plot", metavar="PNG", help="draw the RDFs to a PNG")
