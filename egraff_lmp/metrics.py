"""The EGraFFBench metrics (Bihani et al., Digital Discovery 2024, 3, 759) as pure functions.

All inputs are numpy arrays (float64); nothing here reads files.

- Wright's factor, in %:  WF = 100 · Σ_r (g(r) − g_ref(r))² / Σ_r g_ref(r)²  (the study's
  form), and its square root ``wright_factor_sqrt`` = 100 · sqrt(Σ(g − g_ref)² / Σ g_ref²)
  (Wright's original R-factor, also in %). Both RDFs on the same r grid.
- Jensen–Shannon divergence (the paper's eq. 3) of two RDFs, each first normalised to unit
  sum over bins: JSD = ½ KL(P‖M) + ½ KL(Q‖M), M = (P + Q)/2, natural log, 0·log 0 = 0, so
  0 ≤ JSD ≤ ln 2. (scipy's ``jensenshannon`` returns the square root of this.)
- Energy violation EV(t) = (Ê − E)² / (Ê² + E²) and force violation
  FV(t) = ‖F̂ − F‖₂ / (‖F̂‖₂ + ‖F‖₂) over all 3N force components of frame t (hat: the
  simulation, no hat: the reference). Where the denominator is 0 both values are 0, so the
  frames are identical and the violation is defined as 0.
- Summaries over frames: the geometric mean (0 when any value is 0, the limit of
  exp(mean(log x))), reported with the standard deviation of the per-frame values.
- MAE: energy (eV, and eV/atom) and force (eV/Å, per component).
"""

from __future__ import annotations

import numpy as np


def _same_grid(g, g_ref):
    g, g_ref = np.asarray(g, dtype=float), np.asarray(g_ref, dtype=float)
    if g.shape != g_ref.shape:
        raise ValueError(f"RDFs on different grids: {g.shape} vs {g_ref.shape}")
    return g, g_ref


def wright_factor(g, g_ref) -> float:
    """100 · Σ(g − g_ref)² / Σ g_ref², in %."""
    g, g_ref = _same_grid(g, g_ref)
    den = np.sum(g_ref**2)
    if den == 0:
        return 0.0 if np.sum(g**2) == 0 else float("inf")
    return float(100.0 * np.sum((g - g_ref) ** 2) / den)


def wright_factor_sqrt(g, g_ref) -> float:
    """100 · sqrt(Σ(g − g_ref)² / Σ g_ref²), in %."""
    return float(10.0 * np.sqrt(wright_factor(g, g_ref)))


def jensen_shannon(p, q) -> float:
    """JSD of two non-negative histograms after normalising each to unit sum (nats)."""
    p, q = _same_grid(p, q)
    if np.any(p < 0) or np.any(q < 0):
        raise ValueError("JSD needs non-negative distributions")
    sp, sq = p.sum(), q.sum()
    if sp == 0 or sq == 0:
        raise ValueError("JSD of an all-zero distribution is undefined")
    p, q = p / sp, q / sq
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return np.sum(a[nz] * np.log(a[nz] / m[nz]))

    return float(max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


def energy_violation(e_sim, e_ref) -> np.ndarray:
    """EV(t) = (Ê − E)² / (Ê² + E²) per frame; 0 where both energies are 0."""
    e_sim, e_ref = np.asarray(e_sim, dtype=float), np.asarray(e_ref, dtype=float)
    num, den = (e_sim - e_ref) ** 2, e_sim**2 + e_ref**2
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def species_energies(counts, energies) -> np.ndarray:
    """Per-species reference energies E_s (eV) fitted by least squares to E ≈ Σ_s n_s E_s
    over frames (``counts``: frames × species atom counts; ``energies``: eV). Where the
    frames share one composition the split between species is not determined: the
    minimum-norm solution is returned, for which Σ_s n_s E_s is the mean energy."""
    counts = np.asarray(counts, dtype=float)
    energies = np.asarray(energies, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != energies.shape[0] or counts.shape[0] == 0:
        raise ValueError(f"counts {counts.shape} do not match energies {energies.shape}")
    return np.linalg.lstsq(counts, energies, rcond=None)[0]


def force_violation(f_sim, f_ref) -> np.ndarray:
    """FV(t) = ‖F̂ − F‖₂ / (‖F̂‖₂ + ‖F‖₂) per frame over its 3N components; 0 where both are 0.

    ``f_sim``, ``f_ref``: (frames, atoms, 3) or (atoms, 3) for one frame.
    """
    f_sim, f_ref = np.asarray(f_sim, dtype=float), np.asarray(f_ref, dtype=float)
    if f_sim.shape != f_ref.shape:
        raise ValueError(f"force arrays differ in shape: {f_sim.shape} vs {f_ref.shape}")
    axes = tuple(range(f_sim.ndim - 2, f_sim.ndim))
    num = np.sqrt(np.sum((f_sim - f_ref) ** 2, axis=axes))
    den = np.sqrt(np.sum(f_sim**2, axis=axes)) + np.sqrt(np.sum(f_ref**2, axis=axes))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def geometric_mean(values) -> float:
    """exp(mean(log x)) of non-negative values; 0 when any value is 0."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("geometric mean of no values")
    if np.any(values < 0):
        raise ValueError("geometric mean needs non-negative values")
    if np.any(values == 0):
        return 0.0
    return float(np.exp(np.mean(np.log(values))))


def mae(a, b) -> float:
    """Mean absolute difference over all elements."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.mean(np.abs(a - b)))
