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


def test_species_energies_fit_by_least_squares():
    """Two compositions determine E_s exactly; one composition gives the minimum-norm
    solution, whose Σ n_s E_s is the mean energy."""
    from egraff_lmp.metrics import species_energies

    counts = np.array([[2, 1], [1, 3], [4, 0]])
    e_s = np.array([-3.0, -7.5])
    np.testing.assert_allclose(species_energies(counts, counts @ e_s), e_s, atol=1e-12)
    one = np.array([[40, 160]] * 3)
    energies = np.array([-100.0, -101.0, -102.0])
    fit = species_energies(one, energies)
    assert one[0] @ fit == pytest.approx(-101.0)
    np.testing.assert_allclose(fit, one[0] * -101.0 / (one[0] @ one[0]))  # along n


def test_referenced_ev_by_hand(tmp_path):
    """A 'simulation' whose energies are the reference's plus 0.01 eV: the study's EV on
    totals of -100 eV is tiny, the referenced EV compares 0.01 eV with the fluctuation."""
    from conftest import write_npz

    from egraff_lmp.compare import compare
    from egraff_lmp.io import read_trajectory

    rng = np.random.default_rng(0)
    pos = rng.random((4, 3, 3)) * 5
    e_ref = np.array([-100.0, -100.2, -99.8, -100.1])
    ref = write_npz(tmp_path / "ref.npz", pos, [1, 1, 8], cell=np.eye(3) * 12, energy=e_ref)
    sim = write_npz(tmp_path / "sim.npz", pos, [1, 1, 8], cell=np.eye(3) * 12,
                    energy=e_ref + 0.01)
    c = compare(read_trajectory(sim), read_trajectory(ref), rmax=5.0)
    ev = (0.01 ** 2) / ((e_ref + 0.01) ** 2 + e_ref ** 2)
    np.testing.assert_allclose(c.ev_t, ev)
    zero = e_ref.mean()  # one composition: Σ n_s E_s is the mean reference energy
    a, b = e_ref + 0.01 - zero, e_ref - zero
    np.testing.assert_allclose(c.ev_referenced_t, (a - b) ** 2 / (a ** 2 + b ** 2))
    assert c.ev_referenced > 1e3 * c.ev
    assert sum(n * c.species_energies_ev[s] for s, n in (("H", 2), ("O", 1))) == \
        pytest.approx(zero)
