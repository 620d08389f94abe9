"""compare(): RDF metrics and time-aligned EV/FV on real data."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import GETE_TEST, GETE_VAL, write_npz

from egraff_lmp import metrics
from egraff_lmp.compare import compare
from egraff_lmp.errors import EgraffError
from egraff_lmp.io import read_trajectory


def test_identical_trajectories_give_zero_everything():
    t = read_trajectory(GETE_TEST)
    out = compare(t, read_trajectory(GETE_TEST), stop=30)
    assert out.wf_percent == 0.0 and out.jsd_nats == 0.0 and out.wf_sqrt_percent == 0.0
    assert all(v == 0.0 for v in out.wf_pairs_percent.values())
    assert all(v == 0.0 for v in out.jsd_pairs_nats.values())
    assert out.ev == 0.0 and out.fv == 0.0
    assert out.e_mae_ev == 0.0 and out.f_mae_ev_per_a == 0.0 and out.static is True
    assert out.n_frames_compared == 30
    assert out.frames_compared == {"traj": [0, 29, 1], "ref": [0, 29, 1]}


def test_lammps_dump_against_its_npz_is_static_and_nearly_zero(gete_dump):
    dump, log = gete_dump
    out = compare(read_trajectory(dump, log=log), read_trajectory(GETE_TEST))
    assert out.n_frames_compared == 20 and out.frames_missing == {"traj": 280, "ref": 0}
    assert out.static is True
    assert out.fv < 1e-6 and out.ev < 1e-20
    assert out.f_mae_ev_per_a < 1e-7 and out.e_mae_ev < 1e-8
    assert any("compared the first 20 frames" in n for n in out.notes)


def test_two_halves_of_the_cpmd_run_give_the_studys_decorrelated_values():
    out = compare(read_trajectory(GETE_VAL), read_trajectory(GETE_TEST))
    # two decorrelated stretches of one AIMD run: FV ≈ 0.7, small but non-zero WF/JSD
    assert 0.6 < out.fv < 0.8
    assert 0 < out.wf_percent < 2 and 0 < out.jsd_nats < 0.01
    assert out.static is False
    ev_t = metrics.energy_violation(np.load(GETE_VAL)["energy"][:, 0],
                                    np.load(GETE_TEST)["energy"][:, 0])
    np.testing.assert_allclose(out.ev_t, ev_t)
    assert out.ev == pytest.approx(metrics.geometric_mean(ev_t))
    assert out.ev_std == pytest.approx(np.std(ev_t))


def test_different_atom_counts_compare_rdf_but_refuse_ev_fv(gete, tmp_path):
    # the same liquid replicated 2x2x2 (1600 atoms): structure is intensive
    pos = gete["pos"][:5]
    shifts = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * 19.1
    big = np.concatenate([pos + s for s in shifts], axis=1)
    numbers = np.tile(gete["atomic_numbers"], 8)
    t = read_trajectory(write_npz(tmp_path / "big.npz", big, numbers, gete["cell"] * 2,
                                  energy=gete["energy"][:5, 0] * 8, forces=np.tile(
                                      gete["forces"][:5], (1, 8, 1))))
    out = compare(t, read_trajectory(GETE_TEST), stop=5)
    assert out.ev is None and out.fv is None and out.n_frames_compared == 0
    assert "atom counts differ (1600 vs 200)" in out.notes[0]
    assert out.rmax_a == pytest.approx(9.55)  # the smaller of the two defaults
    assert out.wf_percent < 0.5  # replicas: nearly the same g(r) (extra finite-size pairs only)


def test_missing_energies_are_reported_not_dropped(gete, tmp_path):
    t = read_trajectory(write_npz(tmp_path / "noe.npz", gete["pos"][:4],
                                  gete["atomic_numbers"], gete["cell"],
                                  forces=gete["forces"][:4]))
    out = compare(t, read_trajectory(GETE_TEST), stop=4)
    assert out.ev is None and out.fv == 0.0
    assert any("EV not computed: no energy in frame 0" in n for n in out.notes)


def test_different_species_is_an_error(gete, tmp_path):
    numbers = np.where(gete["atomic_numbers"] == 52, 34, 32)  # Ge/Se instead of Ge/Te
    t = read_trajectory(write_npz(tmp_path / "gese.npz", gete["pos"][:2], numbers,
                                  gete["cell"]))
    with pytest.raises(EgraffError, match="has species Ge,Se but the reference"):
        compare(t, read_trajectory(GETE_TEST))
