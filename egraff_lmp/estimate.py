"""What a reference trajectory's files do not store, estimated from its frames.

- Whether the frames are a trajectory at all: in time order, successive steps are nearly
  equal, so the second difference is small against the step, rms|x[i+1] − 2x[i] + x[i−1]| /
  rms|x[i+1] − x[i]| ≪ 1 (0.04 for the GeTe CPMD, 0.13–0.16 for the MD17 test sets);
  decorrelated or shuffled frames give ≈ 1–1.7. The median of that ratio decides
  (``smoothness``; below 0.5: a trajectory), and triplets above 0.5 (a break) are left out.
- Frame spacing Δt (fs): the second differences follow the forces,
  x[i+1] − 2x[i] + x[i−1] ≈ (F[i]/m) Δt². A least-squares fit over all atoms and the
  smooth triplets gives Δt²; its R² is reported (a thermostat, CPMD's fictitious electron
  dynamics and coarse spacing lower it).
- Temperature (K): kinetic, from central-difference velocities (x[i+1] − x[i−1]) / 2Δt,
  T = Σ m v² / (n_dof k_B) with n_dof = 3N − 3 in a periodic cell and 3N − 6 for a molecule
  (centre-of-mass motion and rotation are not thermal there).

Differences use the minimum image, so atoms wrapped through a periodic boundary do not
count as jumps. Units: Å, eV/Å, amu, fs, K.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .trajectory import Trajectory, minimum_image


@dataclass(frozen=True)
class TrajectoryEstimate:
    """Estimated frame spacing (fs; None when the frames are not a trajectory), the fit's
    R², the kinetic temperature (K; None without a spacing), the median smoothness ratio,
    the breaks left out and the frames used."""

    frame_spacing_fs: float | None
    fit_r2: float
    temperature_k: float | None
    smoothness: float
    breaks: int
    n_frames: int

    @property
    def contiguous(self) -> bool:
        return self.frame_spacing_fs is not None

    def to_dict(self) -> dict:
        return asdict(self)


def _masses(symbols) -> np.ndarray:
    from ase.data import atomic_masses, atomic_numbers

    return np.array([atomic_masses[atomic_numbers[s]] for s in symbols])


def estimate_trajectory(traj: Trajectory, max_frames: int = 400,
                        max_smoothness: float = 0.5) -> TrajectoryEstimate:
    """Frame spacing and temperature of the first ``max_frames`` frames of ``traj``."""
    from ase import units

    frames = list(traj.frames(0, min(max_frames, traj.n_frames)))
    if len(frames) < 3 or any(f.forces is None for f in frames):
        return TrajectoryEstimate(None, 0.0, None, float("nan"), 0, len(frames))
    m = _masses(traj.symbols)[:, None]
    d2s, accs, steps, ratios = [], [], [], []
    for a, b, c in zip(frames, frames[1:], frames[2:]):
        fwd = minimum_image(c.positions - b.positions, b.cell)
        back = minimum_image(b.positions - a.positions, b.cell)
        rms = 0.5 * (np.sqrt((fwd ** 2).sum(1).mean()) + np.sqrt((back ** 2).sum(1).mean()))
        ratio = float(np.sqrt(((fwd - back) ** 2).sum(1).mean()) / rms) if rms else np.inf
        ratios.append(ratio)
        if ratio < max_smoothness:
            d2s.append(fwd - back)
            accs.append(b.forces / m)        # eV/(Å amu) = Å per (ASE time unit)²
            steps.append((back, fwd))
    smooth, breaks = float(np.median(ratios)), int(sum(r >= max_smoothness for r in ratios))
    if smooth >= max_smoothness or not d2s:
        return TrajectoryEstimate(None, 0.0, None, smooth, breaks, len(frames))
    d2, acc = np.concatenate(d2s).ravel(), np.concatenate(accs).ravel()
    dt2 = float(d2 @ acc / (acc @ acc))
    r2 = 1.0 - float(((d2 - dt2 * acc) ** 2).sum() / (d2 @ d2)) if d2 @ d2 > 0 else 0.0
    if dt2 <= 0:
        return TrajectoryEstimate(None, r2, None, smooth, breaks, len(frames))
    dt = np.sqrt(dt2)                        # ASE time units
    kinetic = [0.5 * float((m * ((back + fwd) / (2 * dt)) ** 2).sum())
               for back, fwd in steps]       # eV
    n = traj.n_atoms
    dof = 3 * n - 3 if frames[0].cell is not None else max(3 * n - 6, 1)
    temperature = 2.0 * float(np.mean(kinetic)) / (dof * units.kB)
    return TrajectoryEstimate(float(dt / units.fs), r2, temperature, smooth, breaks,
                              len(frames))
