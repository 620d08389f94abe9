"""Analyses over :class:`~egraff_lmp.trajectory.Trajectory` (MDAnalysis-style classes)."""

from .base import AnalysisBase, Results
from .dynamics import MSD, VDOS
from .rdf import RDF, default_rmax, pair_key

__all__ = ["AnalysisBase", "Results", "MSD", "RDF", "VDOS", "default_rmax", "pair_key"]
