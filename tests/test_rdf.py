"""The RDF against independent implementations (ASE get_rdf, MDAnalysis InterRDF)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.geometry.rdf import get_rdf
from conftest import GETE_TEST, triclinic_gete, write_npz

from egraff_lmp.analysis import RDF
from egraff_lmp.errors import EgraffError
from egraff_lmp.io import read_trajectory

GE, TE = 32, 52


def _ase_rdfs(pos, cell, numbers, rmax, nbins):
    images = [Atoms(numbers=numbers, positions=p, cell=cell, pbc=True) for p in pos]
    total = get_rdf(images, rmax, nbins, no_dists=True)
    parts = {f"{a}-{b}": get_rdf(images, rmax, nbins, elements=(a, b), no_dists=True)
             for a, b in (("Ge", "Ge"), ("Ge", "Te"), ("Te", "Te"))}
    return total, parts


@pytest.mark.parametrize("shape", ["orthogonal", "triclinic"])
def test_rdf_equals_ase_get_rdf_total_and_partials(gete, tmp_path, shape):
    numbers = gete["atomic_numbers"]
    if shape == "orthogonal":
        pos, cell = gete["pos"][:6], gete["cell"]
    else:
        pos, cell = triclinic_gete(gete, 6)
    traj = read_trajectory(write_npz(tmp_path / "t.npz", pos, numbers, cell))
    rmax, dr = 8.0, 0.05
    res = RDF(traj, rmax=rmax, dr=dr).run().results
    total, parts = _ase_rdfs(pos, cell, numbers, rmax, int(round(rmax / dr)))
    n = {"Ge": np.sum(numbers == GE), "Te": np.sum(numbers == TE)}
    # ASE divides A-A by N_A^2 (ordered pairs incl. none with itself) and the total by N^2;
    # ours by N_A(N_A-1) and N(N-1): rescale ASE to our convention.
    np.testing.assert_allclose(res.rdf["total"], total * len(numbers) / (len(numbers) - 1),
                               rtol=0, atol=1e-8)
    for key, g in parts.items():
        a, b = key.split("-")
        factor = n[a] / (n[a] - 1) if a == b else 1.0
        np.testing.assert_allclose(res.rdf[key], g * factor, rtol=0, atol=1e-8)
    assert res.rdf["Ge-Te"].max() > 2.5  # a real first peak, not an empty histogram


def _mda_universe(pos, symbols, dimensions):
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    u = mda.Universe.empty(len(symbols), trajectory=True)
    u.add_TopologyAttr("type", symbols)
    u.load_new(np.asarray(pos, dtype=np.float32), format=MemoryReader,
               dimensions=np.asarray(dimensions, dtype=np.float32))
    return u


def _mda_rdfs(u, rmax, nbins):
    from MDAnalysis.analysis.rdf import InterRDF

    ge, te = u.select_atoms("type Ge"), u.select_atoms("type Te")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, a, b in (("total", u.atoms, u.atoms), ("Ge-Ge", ge, ge), ("Ge-Te", ge, te),
                          ("Te-Te", te, te)):
            # exclusion_block=(1,1) drops i==i, so MDAnalysis also divides by N_A(N_A-1)
            ex = (1, 1) if a is b else None
            out[key] = InterRDF(a, b, nbins=nbins, range=(0.0, rmax),
                                exclusion_block=ex).run().results.rdf
    return out


def test_rdf_equals_mdanalysis_interrdf_orthogonal(gete, tmp_path):
    # InterRDF works in float32; put the GeTe frames in a cell whose edge (19.125 Å) and
    # coordinates (multiples of 2^-10 Å) float32 holds exactly, so both see the same pairs.
    length = 19.125
    pos = np.round(gete["pos"][:8] / 19.1 * length * 1024) / 1024
    traj = read_trajectory(write_npz(tmp_path / "t.npz", pos, gete["atomic_numbers"],
                                     np.eye(3) * length))
    res = RDF(traj, rmax=9.5, dr=0.05).run().results
    theirs = _mda_rdfs(_mda_universe(pos, traj.symbols, [length] * 3 + [90] * 3), 9.5, 190)
    for key, g in theirs.items():
        np.testing.assert_allclose(res.rdf[key], g, rtol=0, atol=1e-8, err_msg=key)


def test_rdf_matches_mdanalysis_interrdf_triclinic_to_float32_rounding(gete, tmp_path):
    # On a triclinic cell InterRDF's float32 minimum image moves distances by ~1e-6 Å, which
    # can flip a pair lying that close to a bin edge: allow a few such pairs, nothing more.
    import MDAnalysis as mda

    pos, cell = triclinic_gete(gete, 8)
    traj = read_trajectory(write_npz(tmp_path / "t.npz", pos.astype(np.float32),
                                     gete["atomic_numbers"], cell))
    res = RDF(traj, rmax=8.0, dr=0.05).run().results
    dims = mda.lib.mdamath.triclinic_box(*cell)
    theirs = _mda_rdfs(_mda_universe(pos, traj.symbols, dims), 8.0, 160)
    edges = np.arange(161) * 0.05
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    volume = abs(np.linalg.det(cell))
    n_ge = 40
    pairs = {"total": 200 * 199 / 2, "Ge-Ge": n_ge * (n_ge - 1) / 2, "Ge-Te": 40 * 160,
             "Te-Te": 160 * 159 / 2}
    for key, g in theirs.items():
        # difference expressed in pair counts summed over the 8 frames
        counts = np.abs(res.rdf[key] - g) * pairs[key] * shell / volume * 8
        assert counts.sum() <= 6, (key, counts.sum())
        assert np.abs(res.rdf[key] - g).mean() < 1e-4


def test_rdf_is_independent_of_frame_order(gete, tmp_path):
    numbers, cell = gete["atomic_numbers"], gete["cell"]
    order = np.random.default_rng(1).permutation(10)
    a = read_trajectory(write_npz(tmp_path / "a.npz", gete["pos"][:10], numbers, cell))
    b = read_trajectory(write_npz(tmp_path / "b.npz", gete["pos"][:10][order], numbers, cell))
    ga, gb = RDF(a).run().results.rdf, RDF(b).run().results.rdf
    for key in ga:
        np.testing.assert_allclose(ga[key], gb[key], rtol=1e-12, atol=1e-12)


def test_rdf_default_rmax_is_half_the_smallest_width_and_volume_per_frame(gete, tmp_path):
    traj = read_trajectory(GETE_TEST)
    res = RDF(traj).run(0, 3).results
    assert res.rmax == pytest.approx(9.55)
    assert res.r[0] == pytest.approx(0.025) and res.dr == 0.05
    # an NPT-like trajectory: each frame normalised with its own volume
    pos = np.concatenate([gete["pos"][:1], gete["pos"][:1] * 1.1])
    cells = np.stack([gete["cell"], gete["cell"] * 1.1])
    t = read_trajectory(write_npz(tmp_path / "npt.npz", pos, gete["atomic_numbers"], cells))
    g = RDF(t, rmax=8.0).run().results.rdf["total"]
    g0 = RDF(t, rmax=8.0).run(0, 1).results.rdf["total"]
    g1 = RDF(t, rmax=8.0).run(1, 2).results.rdf["total"]
    np.testing.assert_allclose(g, 0.5 * (g0 + g1), atol=1e-12)


def test_rdf_of_ideal_gas_tends_to_one(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.random((20, 400, 3)) * 15.0
    numbers = np.array([1] * 100 + [8] * 300)
    t = read_trajectory(write_npz(tmp_path / "gas.npz", pos, numbers, np.eye(3) * 15.0))
    res = RDF(t, rmax=7.0, dr=0.5).run().results
    for key, g in res.rdf.items():
        assert abs(g[3:].mean() - 1.0) < 0.03, key


def test_non_periodic_rdf_is_a_normalised_pair_distance_density():
    from conftest import ACAC

    t = read_trajectory(ACAC)
    res = RDF(t, rmax=10.0, dr=0.02).run(0, 50).results
    assert res.normalisation == "pair-distance-density"
    assert set(res.rdf) == {"total", "C-C", "C-H", "C-O", "H-H", "H-O", "O-O"}
    for key, p in res.rdf.items():  # a 15-atom molecule fits inside 10 Å
        assert p.sum() * res.dr == pytest.approx(1.0, abs=1e-12), key
    # the shortest distances are the bonds: C-H about 1.09 Å, C=O/C-O from about 1.2 Å
    assert 1.0 < res.r[np.nonzero(res.rdf["C-H"])[0][0]] < 1.1
    assert 1.15 < res.r[np.nonzero(res.rdf["C-O"])[0][0]] < 1.3


def test_rmax_beyond_half_the_cell_is_an_error_naming_the_limit():
    t = read_trajectory(GETE_TEST)
    with pytest.raises(EgraffError, match=r"exceeds half the smallest cell width \(9.55"):
        RDF(t, rmax=12.0).run(0, 2)


def test_bond_angles_equal_a_brute_force_count_with_ase():
    """Every j-i-k angle within the cutoff (all images), per centre species, unit area."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    from egraff_lmp.analysis.angles import BondAngles, first_minimum

    gete = read_trajectory(GETE_TEST)
    rdf = RDF(gete).run(0, 20).results
    cutoff = first_minimum(rdf.r, rdf.rdf["total"])
    assert 2.8 < cutoff < 3.6  # GeTe4 first coordination shell
    res = BondAngles(gete, cutoff).run(0, 2).results
    counts = {s: np.zeros(90) for s in ("Ge", "Te")}
    for frame in gete.frames(0, 2):
        atoms = Atoms(gete.symbols, positions=frame.positions, cell=frame.cell, pbc=True)
        i, d = neighbor_list("iD", atoms, cutoff)
        for c in range(len(atoms)):
            v = d[i == c] / np.linalg.norm(d[i == c], axis=1)[:, None]
            a, b = np.triu_indices(len(v), k=1)
            ang = np.degrees(np.arccos(np.clip(np.sum(v[a] * v[b], axis=1), -1, 1)))
            counts[gete.symbols[c]] += np.histogram(ang, bins=90, range=(0, 180))[0]
    for s, h in counts.items():
        np.testing.assert_allclose(res.adf[s], h / (h.sum() * 2.0), atol=1e-12)
    total = counts["Ge"] + counts["Te"]
    np.testing.assert_allclose(res.adf["total"], total / (total.sum() * 2.0), atol=1e-12)
