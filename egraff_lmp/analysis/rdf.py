"""Radial distribution functions: the total g(r) and every partial g_AB(r).

Conventions
-----------
Bins are ``[k·dr, (k+1)·dr)`` for k < n_bins = floor(r_max/dr); ``results.r`` holds the bin
centres (Å). Every unordered pair of atoms within r_max is counted once (all periodic
images, from vesin's neighbour list).

Periodic frames (ideal-gas normalisation, with each frame's own volume V):

    g_AB(r) = V · n_AB(r) / (P_AB · ΔV(r)),   ΔV(r) = 4π/3 · (r_hi³ − r_lo³)

where n_AB(r) is the number of A–B pairs in the bin and P_AB the number of A–B pairs in the
system: N_A·N_B for A ≠ B, N_A·(N_A − 1)/2 for A = B, N·(N − 1)/2 for the total. So g → 1
for an ideal gas, exactly, for finite N. The frame average is the mean of the per-frame g.
(MDAnalysis' ``InterRDF`` divides by N_A·N_B for A = B too, so its partials are
(N_A − 1)/N_A times these; ASE's ``get_rdf`` partials use N_A·N instead.)

Non-periodic frames (molecules; no volume exists): the pair-distance density

    p_AB(r) = n_AB(r) / (P_AB · dr)    in 1/Å,

i.e. the normalised histogram of A–B distances, which integrates to the fraction of A–B
pairs closer than r_max (1 when r_max exceeds the molecule's size). Both RDFs of a
comparison use the same convention, so WF and JSD mean the same thing either way.

Pairs that do not exist (a species with a single atom has no A–A pair) are left out of
``results.rdf``. r_max defaults to min(10 Å, half the smallest perpendicular cell width of
the first frame) and must not exceed half of any frame's smallest width (an error, not a
clamp: past it g(r) mixes in a periodic image of the same pair).
"""

from __future__ import annotations

import numpy as np

from ..errors import EgraffError
from ..trajectory import Frame, Trajectory, perpendicular_widths
from .base import AnalysisBase

DEFAULT_RMAX = 10.0  # Å
DEFAULT_DR = 0.05  # Å


def pair_key(a: str, b: str) -> str:
    """The JSON key of a species pair: symbols in alphabetical order, e.g. ``Ge-Te``."""
    return "-".join(sorted((a, b)))


def default_rmax(frame: Frame, trajectory: Trajectory | None = None, indices=None) -> float:
    """min(10 Å, half the smallest perpendicular width of the cell); 10 Å for molecules.
    With ``trajectory`` and ``indices``, the smallest cell over those frames where the
    format knows it without reading them (a LAMMPS dump of an NPT run whose box shrinks)."""
    if frame.cell is None:
        return DEFAULT_RMAX
    width = perpendicular_widths(frame.cell).min()
    if trajectory is not None and indices is not None:
        known = trajectory.smallest_cell_width(indices)
        if known is not None:
            width = min(width, known)
    return float(min(DEFAULT_RMAX, width / 2))


class RDF(AnalysisBase):
    """Total and partial RDFs of a trajectory, averaged over frames.

    ``RDF(traj, rmax=None, dr=0.05).run(start, stop, step).results`` has ``r`` (bin centres,
    Å), ``rdf`` (dict: ``"total"`` and ``"A-B"`` → array), ``n_frames``, ``n_atoms``,
    ``rmax``, ``dr`` and ``normalisation`` (``"volume"`` or ``"pair-distance-density"``).
    ``n_threads`` goes to vesin's neighbour search (0: vesin's default).
    """

    def __init__(self, trajectory: Trajectory, rmax: float | None = None,
                 dr: float = DEFAULT_DR, n_threads: int = 0, verbose: bool = False):
        super().__init__(trajectory, verbose=verbose)
        if dr is None or not dr > 0:
            raise EgraffError(f"dr must be positive, got {dr}")
        if rmax is not None and not rmax > dr:
            raise EgraffError(f"rmax must be larger than dr ({dr} Å), got {rmax}")
        self._rmax_asked, self.dr, self._n_threads = rmax, float(dr), n_threads
        species = trajectory.species
        self.pairs = [(a, b) for k, a in enumerate(species) for b in species[k:]]
        index = {s: k for k, s in enumerate(species)}
        self._types = np.array([index[s] for s in trajectory.symbols], dtype=np.int64)
        n_sp = len(species)
        self._pair_code = np.zeros((n_sp, n_sp), dtype=np.int64)
        counts = np.bincount(self._types, minlength=n_sp)
        self._n_pairs = np.zeros(len(self.pairs))
        for code, (a, b) in enumerate(self.pairs):
            ia, ib = index[a], index[b]
            self._pair_code[ia, ib] = self._pair_code[ib, ia] = code
            na, nb = counts[ia], counts[ib]
            self._n_pairs[code] = na * (na - 1) / 2 if a == b else na * nb
        n = len(self._types)
        self._n_pairs_total = n * (n - 1) / 2

    def _prepare(self):
        self.rmax = None
        self._periodic = None
        self._acc = None

    def _setup(self, frame: Frame):
        self.rmax = (self._rmax_asked if self._rmax_asked is not None else
                     default_rmax(frame, self._trajectory, self.frame_indices))
        self.n_bins = int(np.floor(self.rmax / self.dr + 1e-9))
        if self.n_bins < 1:
            raise EgraffError(f"rmax {self.rmax} Å holds no bin of dr {self.dr} Å")
        self._periodic = frame.cell is not None
        self._acc = np.zeros(len(self.pairs) * self.n_bins)
        from vesin import NeighborList

        # A cutoff a hair above the last edge so that no pair inside it is lost.
        self._nl = NeighborList(cutoff=self.n_bins * self.dr, full_list=False,
                                n_threads=self._n_threads)

    def _single_frame(self, frame: Frame):
        if self._acc is None:
            self._setup(frame)
        if (frame.cell is not None) != self._periodic:
            raise EgraffError(f"{self._trajectory.path}: frame {frame.index} changes between "
                              "periodic and non-periodic")
        if self._periodic:
            half = perpendicular_widths(frame.cell).min() / 2
            if self.rmax > half + 1e-9:
                raise EgraffError(
                    f"{self._trajectory.path}: rmax {self.rmax:g} Å exceeds half the smallest "
                    f"cell width ({half:.4g} Å) in frame {frame.index}; give --rmax <= "
                    f"{half:.4g}")
            box, weight = frame.cell, frame.volume
        else:
            box, weight = np.zeros((3, 3)), 1.0
        i, j, d = self._nl.compute(frame.positions, box, self._periodic, quantities="ijd")
        b = (d * (1.0 / self.dr)).astype(np.int64)
        keep = b < self.n_bins
        code = self._pair_code[self._types[i[keep]], self._types[j[keep]]]
        counts = np.bincount(code * self.n_bins + b[keep], minlength=self._acc.size)
        self._acc += weight * counts

    def _conclude(self):
        edges = np.arange(self.n_bins + 1) * self.dr
        if self._periodic:
            shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        else:
            shell = np.full(self.n_bins, self.dr)
        acc = self._acc.reshape(len(self.pairs), self.n_bins) / self.n_frames
        rdf = {"total": acc.sum(axis=0) / (self._n_pairs_total * shell)}
        for code, (a, b) in enumerate(self.pairs):
            if self._n_pairs[code] > 0:
                rdf[pair_key(a, b)] = acc[code] / (self._n_pairs[code] * shell)
        self.results.r = 0.5 * (edges[1:] + edges[:-1])
        self.results.rdf = rdf
        self.results.n_frames = self.n_frames
        self.results.n_atoms = self._trajectory.n_atoms
        self.results.rmax = self.n_bins * self.dr
        self.results.dr = self.dr
        self.results.normalisation = "volume" if self._periodic else "pair-distance-density"
