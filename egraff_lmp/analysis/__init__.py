"""Analyses over :class:`~egraff_lmp.trajectory.Trajectory` (MDAnalysis-style classes)."""

from .base import AnalysisBase, Results
from .rdf import RDF, default_rmax, pair_key

__all__ = ["AnalysisBase", "Results", "RDF", "default_rmax", "pair_key"]
