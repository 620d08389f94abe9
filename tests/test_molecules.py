"""Molecules analysed as molecules: internal MSD (translation and rotation removed), the
VDOS where the vibrations are, bonds from covalent radii (hand-made cases and the shipped
acetylacetone set)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ACAC, GETE_TEST
from scipy.spatial.transform import Rotation

from egraff_lmp.analysis import MSD, VDOS
from egraff_lmp.analysis.angles import BondAngles, covalent_cutoffs
from egraff_lmp.io import read_trajectory
from egraff_lmp.trajectory import MemoryTrajectory

WATER = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])


def _tumbling(body, n=200, dt_fs=0.5, seed=3):
    """``body`` drifting at 0.01 Å/fs and spinning about a random axis (0.02 rad/fs)."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    t = np.arange(n) * dt_fs
    return np.array([Rotation.from_rotvec(0.02 * ti * axis).apply(body)
                     + 0.01 * ti * np.array([1.0, 0.5, -0.2]) for ti in t])


def test_a_rigid_molecule_translating_and_rotating_has_zero_internal_msd():
    traj = MemoryTrajectory.from_positions(_tumbling(WATER), ["O", "H", "H"])
    res = MSD(traj, 0.5).run().results
    assert res.internal and res.diffusivity == {}
    assert np.abs(res.msd["total"]).max() < 1e-20
    # the same motion in a periodic box is transport: MSD grows, a diffusivity is fitted
    boxed = MemoryTrajectory.from_positions(_tumbling(WATER) + 50.0, ["O", "H", "H"],
                                            np.eye(3) * 100.0)
    periodic = MSD(boxed, 0.5).run().results
    assert not periodic.internal and periodic.msd["total"][-1] > 0.3
    assert periodic.diffusivity["total"] > 0


@pytest.mark.parametrize("f_thz", [30.0, 90.0])
def test_a_harmonic_dimer_vdos_peaks_at_its_frequency(f_thz):
    """A C-H-like dimer vibrating at f while it drifts and tumbles: the VDOS peaks at f
    (within one bin), and the plot axis reaches past it."""
    dt_fs, n = 0.5, 1000
    t = np.arange(n) * dt_fs
    bond = 1.09 + 0.05 * np.cos(2 * np.pi * f_thz * 1e-3 * t)  # THz x fs = 1e-3
    masses = np.array([12.011, 1.008])
    frames = []
    spin = _tumbling(np.array([[1.0, 0.0, 0.0]]), n, dt_fs)[:, 0]
    for k in range(n):
        u = spin[k] - 0.01 * t[k] * np.array([1.0, 0.5, -0.2])  # unit vector, rotating
        com = 0.01 * t[k] * np.array([1.0, 0.5, -0.2])
        frames.append(np.array([com - bond[k] * masses[1] / masses.sum() * u,
                                com + bond[k] * masses[0] / masses.sum() * u]))
    res = VDOS(MemoryTrajectory.from_positions(np.array(frames), ["C", "H"]), dt_fs).run().results
    peak = res.frequency[np.argmax(res.vdos["total"])]
    assert abs(peak - f_thz) <= res.resolution_thz
    assert res.resolution_thz == pytest.approx(1e3 / ((n - 2) * dt_fs), rel=1e-6)
    assert f_thz <= res.f_extent_thz < f_thz + 10 * res.resolution_thz


def test_covalent_bonds_count_bonds_not_second_neighbours():
    """Acetylacetone (C5H8O2, enol form): 14 covalent bonds, so sum over atoms of C(degree, 2)
    angles; a 3.1 Å cutoff (the pair density's first minimum) also counts second neighbours
    and gives angles below 40 degrees that no bonded triple has."""
    traj = read_trajectory(ACAC)
    frame = traj[0]
    cut = covalent_cutoffs(traj.species)
    assert cut[("C", "H")] == pytest.approx(1.2 * (0.76 + 0.31))
    d = np.linalg.norm(frame.positions[:, None] - frame.positions[None], axis=2)
    sym = np.array(traj.symbols)
    limit = np.vectorize(lambda a, b: cut[(a, b)])(sym[:, None], sym[None])
    bonded = (d < limit) & ~np.eye(len(sym), dtype=bool)
    assert bonded.sum() // 2 == 14
    covalent = BondAngles(traj, cut).run(0, 1).results
    wide = BondAngles(traj, 3.1).run(0, 1).results
    width = 180.0 / len(covalent.angles)
    assert covalent.adf["total"][covalent.angles < 90].sum() * width == 0.0
    assert wide.adf["total"][wide.angles < 40].sum() * width > 0.05
    keyed = BondAngles(traj, {f"{a}-{b}": v for (a, b), v in cut.items()}).run(0, 1).results
    np.testing.assert_array_equal(keyed.adf["total"], covalent.adf["total"])


def test_periodic_systems_keep_a_single_rdf_cutoff_and_a_diffusivity():
    traj = read_trajectory(GETE_TEST)
    res = MSD(traj, 1.19).run(0, 40).results
    assert not res.internal and set(res.diffusivity) == {"Ge", "Te", "total"}
    assert BondAngles(traj, 3.2).run(0, 2).results.cutoff == 3.2
