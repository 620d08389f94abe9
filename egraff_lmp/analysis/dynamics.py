"""Transport and vibrations from a trajectory: MSD with diffusivity, and the vibrational
density of states (VDOS), in MDAnalysis' habit (``MSD(traj, dt_fs).run().results``).

Positions may be wrapped into the cell: consecutive frames are unwrapped with the minimum
image, which is right while no atom moves half a cell between two frames.

Molecules (frames without a cell) are analysed in their own frame: each frame is moved onto
the first by removing the centre-of-mass translation and the rigid rotation (mass-weighted
Kabsch fit), so that drift and tumbling in vacuum do not count. Their MSD is the *internal*
MSD (``results.internal`` is True) and has no diffusivity; their VDOS holds vibrations only.

``dt_fs`` is the time between the analysed frames (fs; with ``run(step=k)`` give k × the
frame spacing). Units: MSD in Å², lag times in fs, diffusivity in Å²/ps (1 Å²/ps =
1e-4 cm²/s), frequencies in THz; the VDOS of each species is normalised to unit area.
"""

from __future__ import annotations

import numpy as np

from ..errors import EgraffError
from ..trajectory import minimum_image
from .base import AnalysisBase


def align_onto(x: np.ndarray, ref: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """``x`` (n×3, Å) translated and rotated onto ``ref`` (its centre of mass on ``ref``'s,
    then the proper rotation minimising Σ m |R x − ref|², Kabsch)."""
    w = masses / masses.sum()
    xc = x - w @ x
    rc = ref - w @ ref
    u, _, vt = np.linalg.svd((xc * w[:, None]).T @ rc)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return xc @ rot + w @ ref


class _Unwrapped(AnalysisBase):
    def __init__(self, trajectory, dt_fs: float, verbose=False):
        super().__init__(trajectory, verbose)
        if not dt_fs or dt_fs <= 0:
            raise EgraffError(f"{type(self).__name__} needs the time between frames (fs), "
                              f"got {dt_fs}")
        self.dt_fs = float(dt_fs)

    def _prepare(self):
        from ase.data import atomic_masses, atomic_numbers

        self._x, self._last, self._internal = [], None, None
        self._masses = np.array([atomic_masses[atomic_numbers[s]]
                                 for s in self._trajectory.symbols])

    def _single_frame(self, frame):
        x = frame.positions
        if self._internal is None:
            self._internal = frame.cell is None
        if self._internal:  # a molecule: in its own frame (module doc)
            self._x.append(x.copy() if not self._x else
                           align_onto(x, self._x[0], self._masses))
            return
        if self._last is None:
            self._x.append(x.copy())
        else:
            self._x.append(self._x[-1] + minimum_image(x - self._last, frame.cell))
        self._last = x

    def _by_species(self):
        symbols = np.array(self._trajectory.symbols)
        return {s: symbols == s for s in self._trajectory.species}


class MSD(_Unwrapped):
    """Mean-squared displacement per species, averaged over all time origins, and the
    diffusivity D = slope / 6 fitted over the second half of the lag times; for a molecule
    the internal MSD (translation and rotation removed) and no diffusivity."""

    def _conclude(self):
        x = np.array(self._x)  # (frames, atoms, 3)
        n = len(x)
        lags = np.arange(max(1, n // 2 + 1))
        msd_atom = np.array([np.mean(np.sum((x[k:] - x[:n - k]) ** 2, axis=2), axis=0)
                             for k in lags])  # (lags, atoms)
        self.results.lagtimes = lags * self.dt_fs
        self.results.msd = {s: msd_atom[:, m].mean(axis=1) for s, m in self._by_species().items()}
        self.results.msd["total"] = msd_atom.mean(axis=1)
        self.results.diffusivity = {}
        self.results.internal = bool(self._internal)
        if self._internal:
            return
        half = lags >= max(1, len(lags) // 2)
        for s, y in self.results.msd.items():
            if half.sum() >= 2:
                slope = np.polyfit(self.results.lagtimes[half] / 1000.0, y[half], 1)[0]
                self.results.diffusivity[s] = float(slope / 6.0)  # Å²/ps
            else:
                self.results.diffusivity[s] = None


class VDOS(_Unwrapped):
    """Vibrational density of states per species: the power spectrum of the velocities
    (central differences of the unwrapped positions), mass-independent, unit area.

    The window is the frames analysed: ``results.resolution_thz`` = 1 / (frames × Δt);
    ``results.f_extent_thz`` is the frequency below which 99 % of the total lies (the
    highest band of the spectrum, e.g. ~90 THz for C-H stretches), for plotting axes."""

    def _conclude(self):
        x = np.array(self._x)
        if len(x) < 5:
            raise EgraffError("VDOS needs at least 5 frames")
        v = (x[2:] - x[:-2]) / (2 * self.dt_fs)  # Å/fs
        v = v - v.mean(axis=0)
        window = np.hanning(len(v))[:, None, None]
        spec = np.abs(np.fft.rfft(v * window, axis=0)) ** 2  # (freqs, atoms, 3)
        freq = np.fft.rfftfreq(len(v), d=self.dt_fs * 1e-15) / 1e12  # THz
        self.results.frequency = freq
        self.results.vdos = {}
        df = freq[1] - freq[0]
        for s, m in list(self._by_species().items()) + [("total", slice(None))]:
            g = spec[:, m].sum(axis=(1, 2))
            area = g.sum() * df
            self.results.vdos[s] = g / area if area > 0 else g
        self.results.resolution_thz = float(df)
        self.results.internal = bool(self._internal)
        self.results.f_extent_thz = spectral_extent(freq, self.results.vdos["total"])


def spectral_extent(freq, g, fraction: float = 0.99) -> float:
    """The frequency (THz) below which ``fraction`` of the area of ``g`` lies."""
    g = np.asarray(g, dtype=float)
    c = np.cumsum(g)
    if not len(c) or c[-1] <= 0:
        return float(freq[-1]) if len(freq) else 0.0
    return float(freq[min(int(np.searchsorted(c, fraction * c[-1])), len(freq) - 1)])
