"""The EGraFFBench metrics on cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from egraff_lmp import metrics


def test_wright_factor_by_hand():
    g_ref, g = np.array([1.0, 2.0, 2.0]), np.array([1.0, 1.0, 3.0])
    # Σ(g-g_ref)^2 = 0 + 1 + 1 = 2, Σ g_ref^2 = 1 + 4 + 4 = 9
    assert metrics.wright_factor(g, g_ref) == pytest.approx(100 * 2 / 9)
    assert metrics.wright_factor_sqrt(g, g_ref) == pytest.approx(100 * math.sqrt(2 / 9))
    assert metrics.wright_factor(g_ref, g_ref) == 0.0


def test_jsd_by_hand_and_against_scipy_squared():
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert metrics.jensen_shannon(p, q) == pytest.approx(math.log(2))  # disjoint: ln 2
    p, q = np.array([3.0, 1.0]), np.array([1.0, 1.0])  # P=(3/4,1/4), Q=(1/2,1/2), M=(5/8,3/8)
    expect = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) \
        + 0.5 * (0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375))
    assert metrics.jensen_shannon(p, q) == pytest.approx(expect, rel=1e-12)
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    a[:5] = 0.0  # 0 log 0 = 0
    assert metrics.jensen_shannon(a, b) == pytest.approx(jensenshannon(a, b) ** 2, rel=1e-10)
    assert metrics.jensen_shannon(a, 7 * a) == pytest.approx(0.0, abs=1e-15)  # scale-free


def test_energy_violation_by_hand_and_zero_energies():
    ev = metrics.energy_violation([1.0, -2.0, 0.0, 0.0], [3.0, -2.0, 0.0, 5.0])
    np.testing.assert_allclose(ev, [4 / 10, 0.0, 0.0, 1.0])


def test_force_violation_by_hand_and_zero_forces():
    f_sim = np.array([[[3.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]])
    f_ref = np.array([[[0.0, 4.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]]])
    # frame 0: |(3,-4,0)| = 5 over 3 + 4; frame 1: both zero -> 0; frame 2: 2 / (0 + 2)
    np.testing.assert_allclose(metrics.force_violation(f_sim, f_ref), [5 / 7, 0.0, 1.0])
    assert metrics.force_violation(f_ref[0], f_ref[0]) == 0.0
    with pytest.raises(ValueError):
        metrics.force_violation(f_sim, f_ref[:, :, :2])


def test_geometric_mean_by_hand():
    assert metrics.geometric_mean([1.0, 4.0, 16.0]) == pytest.approx(4.0)
    assert metrics.geometric_mean([0.0, 4.0]) == 0.0
    with pytest.raises(ValueError):
        metrics.geometric_mean([])


def test_mae_by_hand():
    assert metrics.mae([1.0, 2.0, 3.0], [2.0, 2.0, 0.0]) == pytest.approx(4 / 3)
