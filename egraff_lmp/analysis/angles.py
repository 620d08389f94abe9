"""Bond-angle distributions, in MDAnalysis' habit (``BondAngles(traj, cutoff).run().results``).

Every angle j–i–k between two neighbours j, k of a centre i closer than ``cutoff`` (Å;
all periodic images, vesin's full neighbour list) is counted once, in degrees, per centre
species and in total. Each distribution is normalised to unit area (1/degree).
``first_minimum(r, g)`` picks a bonding cutoff from an RDF: the first minimum after its
highest peak (of the smoothed curve).
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


class BondAngles(AnalysisBase):
    def __init__(self, trajectory, cutoff: float, n_bins: int = 90, verbose=False):
        super().__init__(trajectory, verbose)
        if cutoff <= 0:
            raise EgraffError(f"bond cutoff must be positive, got {cutoff}")
        self.cutoff, self.n_bins = float(cutoff), int(n_bins)

    def _prepare(self):
        from vesin import NeighborList

        self._nl = NeighborList(cutoff=self.cutoff, full_list=True)
        self._species = self._trajectory.species
        self._type = np.array([self._species.index(s) for s in self._trajectory.symbols])
        self._acc = np.zeros((len(self._species), self.n_bins))

    def _single_frame(self, frame):
        periodic = frame.cell is not None
        box = frame.cell if periodic else np.zeros((3, 3))
        i, D = self._nl.compute(frame.positions, box, periodic, quantities="iD")
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
