"""Bond-angle distributions, in MDAnalysis' habit (``BondAngles(traj, cutoff).run().results``).

Every angle j–i–k between two neighbours j, k of a centre i closer than ``cutoff`` (Å;
all periodic images, vesin's full neighbour list) is counted once, in degrees, per centre
species and in total. Each distribution is normalised to unit area (1/degree).
``cutoff`` is one distance, or one per element pair ({("C", "H"): 1.31, ...}):
``covalent_cutoffs(species)`` gives bonds by covalent radii (Cordero et al. 2008, ASE's
table) × 1.2, what molecules need; ``first_minimum(r, g)`` picks one cutoff from an RDF:
the first minimum after its highest peak (of the smoothed curve), what liquids and
crystals need.
"""

from __future__ import annotations

import numpy as np

from ..errors import EgraffError
from .base import AnalysisBase


def first_minimum(r, g, smooth: int = 7) -> float:
    """r (Å) of the first minimum of ``g`` after its global maximum, on ``g`` smoothed by a
    ``smooth``-bin moving average (so that bin noise does not count as a minimum)."""
    r, g = np.asarray(r), np.asarray(g, dtype=float)
    if smooth > 1 and len(g) > smooth:
        g = np.convolve(g, np.ones(smooth) / smooth, mode="same")
    peak = int(np.argmax(g))
    rising = np.nonzero(np.diff(g[peak:]) > 0)[0]
    if not len(rising):
        raise EgraffError("the RDF has no minimum after its first peak: give a bond cutoff")
    return float(r[peak + rising[0]])


COVALENT_FACTOR = 1.2


def covalent_cutoffs(species, factor: float = COVALENT_FACTOR) -> dict:
    """Bond cutoffs (Å) per element pair: ``factor`` × the sum of the covalent radii."""
    from ase.data import atomic_numbers, covalent_radii

    r = {s: float(covalent_radii[atomic_numbers[s]]) for s in species}
    return {(a, b): factor * (r[a] + r[b]) for a in species for b in species}


def cutoff_label(cutoff) -> str:
    """How a cutoff reads in a title: '2.9 Å' or 'C-H 1.33, C-C 1.82 Å'."""
    if isinstance(cutoff, dict):
        pairs = sorted({tuple(sorted(k.split("-") if isinstance(k, str) else k)): v
                        for k, v in cutoff.items()}.items())
        return ", ".join(f"{a}-{b} {v:.3g}" for (a, b), v in pairs) + " Å"
    return f"{cutoff:.3g} Å"


class BondAngles(AnalysisBase):
    def __init__(self, trajectory, cutoff, n_bins: int = 90, verbose=False):
        super().__init__(trajectory, verbose)
        pairs = cutoff if isinstance(cutoff, dict) else None
        values = list(pairs.values()) if pairs else [cutoff]
        if not values or min(values) <= 0:
            raise EgraffError(f"bond cutoff must be positive, got {cutoff}")
        self.cutoff = ({(tuple(k.split("-")) if isinstance(k, str) else tuple(k)): float(v)
                        for k, v in pairs.items()} if pairs else float(cutoff))
        self.n_bins = int(n_bins)

    def _prepare(self):
        from vesin import NeighborList

        self._species = self._trajectory.species
        self._type = np.array([self._species.index(s) for s in self._trajectory.symbols])
        self._pair_cut = None
        if isinstance(self.cutoff, dict):
            n = len(self._species)
            self._pair_cut = np.zeros((n, n))
            for a in range(n):
                for b in range(n):
                    key = (self._species[a], self._species[b])
                    if key not in self.cutoff and key[::-1] not in self.cutoff:
                        raise EgraffError(f"no bond cutoff for the pair {key[0]}-{key[1]}")
                    self._pair_cut[a, b] = self.cutoff.get(key, self.cutoff.get(key[::-1]))
        reach = float(self._pair_cut.max()) if self._pair_cut is not None else self.cutoff
        self._nl = NeighborList(cutoff=reach, full_list=True)
        self._acc = np.zeros((len(self._species), self.n_bins))

    def _single_frame(self, frame):
        periodic = frame.cell is not None
        box = frame.cell if periodic else np.zeros((3, 3))
        i, j, D = self._nl.compute(frame.positions, box, periodic, quantities="ijD")
        if self._pair_cut is not None and len(i):
            keep = (np.linalg.norm(D, axis=1)
                    < self._pair_cut[self._type[i], self._type[j]])
            i, D = i[keep], D[keep]
        if not len(i):
            return
        order = np.argsort(i, kind="stable")
        i, D = i[order], D[order]
        u = D / np.linalg.norm(D, axis=1)[:, None]
        centres, start, count = np.unique(i, return_index=True, return_counts=True)
        m = int(count.max())
        slot = np.arange(len(i)) - np.repeat(start, count)
        padded = np.zeros((len(centres), m, 3))
        padded[np.repeat(np.arange(len(centres)), count), slot] = u
        cos = np.einsum("cad,cbd->cab", padded, padded)
        a, b = np.triu_indices(m, k=1)
        valid = (a[None, :] < count[:, None]) & (b[None, :] < count[:, None])
        cos = np.clip(cos[:, a, b][valid], -1.0, 1.0)
        centre_type = np.repeat(self._type[centres], valid.sum(axis=1))
        k = np.minimum((np.degrees(np.arccos(cos)) * self.n_bins / 180.0).astype(int),
                       self.n_bins - 1)
        np.add.at(self._acc, (centre_type, k), 1.0)

    def _conclude(self):
        width = 180.0 / self.n_bins
        self.results.angles = (np.arange(self.n_bins) + 0.5) * width
        self.results.adf = {}
        total = self._acc.sum(axis=0)
        for s, row in list(zip(self._species, self._acc)) + [("total", total)]:
            area = row.sum() * width
            self.results.adf[s] = row / area if area > 0 else row
        self.results.cutoff = self.cutoff
