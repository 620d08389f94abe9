"""Readers: every format gives the same frames; LAMMPS dumps written by real LAMMPS."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import ACAC, GETE_TEST, triclinic_gete, write_npz

from egraff_lmp.analysis import RDF
from egraff_lmp.errors import EgraffError
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_write import write_lammps_data, write_lammps_dump
from egraff_lmp.trajectory import Frame


def test_npz_reader_gives_the_arrays_of_the_file(gete):
    t = read_trajectory(GETE_TEST)
    assert (t.format, t.n_frames, t.n_atoms, t.species) == ("npz", 300, 200, ["Ge", "Te"])
    f = t[123]
    np.testing.assert_array_equal(f.positions, gete["pos"][123])
    np.testing.assert_array_equal(f.forces, gete["forces"][123])
    assert f.energy == gete["energy"][123, 0]
    np.testing.assert_array_equal(f.cell, gete["cell"])
    assert [fr.index for fr in t.frames(290, None, 4)] == [290, 294, 298]


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_frames_read_in_any_order_are_the_files_frames(gete, tmp_path, compressed):
    """Frames jumped to forwards, backwards and twice (a stored member is read at absolute
    offsets: ZipExtFile.seek gave stale bytes on Python 3.12.3), stored or compressed."""
    path = tmp_path / "g.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, **{k: gete[k][:120] if gete[k].ndim == 3 or k == "energy" else gete[k]
                  for k in gete})
    traj = read_trajectory(path)
    for i in (0, 50, 100, 0, 119, 7, 50):
        np.testing.assert_array_equal(traj[i].positions, gete["pos"][i])
        np.testing.assert_array_equal(traj[i].forces, gete["forces"][i])
        assert traj[i].energy == pytest.approx(float(gete["energy"][i][0]))


def test_lammps_written_dump_round_trips_to_the_npz(gete_dump, gete):
    dump, log = gete_dump
    t = read_trajectory(dump, log=log)
    assert (t.format, t.n_frames, t.symbols) == ("lammps-dump", 20, read_trajectory(
        GETE_TEST).symbols)
    for k, f in enumerate(t):
        assert f.step == 10 * k
        # MDAnalysis parses dump coordinates in float32: ~1e-6 Å at 19 Å
        np.testing.assert_allclose(f.positions, gete["pos"][k], atol=3e-6)
        np.testing.assert_allclose(f.forces, gete["forces"][k], atol=1e-6)
        assert f.energy == pytest.approx(gete["energy"][k, 0], abs=1e-9)
        np.testing.assert_allclose(f.cell, gete["cell"], atol=1e-6)


def test_dump_types_map_by_option_element_column_or_data_masses(gete_dump, tmp_path):
    dump, _ = gete_dump
    by_element = read_trajectory(dump).symbols
    text = dump.read_text().replace("id type element x y z", "id type x y z")  # header
    lines = []
    for line in text.splitlines():  # drop the element column (3rd) from atom lines
        w = line.split()
        lines.append(" ".join(w[:2] + w[3:]) if len(w) == 9 else line)
    plain = tmp_path / "plain.lammpstrj"
    plain.write_text("\n".join(lines) + "\n")
    assert read_trajectory(plain, types=["Ge", "Te"]).symbols == by_element
    assert read_trajectory(plain, data=dump.with_suffix(".data")).symbols == by_element
    with pytest.raises(EgraffError, match="have no element: give --types"):
        read_trajectory(plain)
    with pytest.raises(EgraffError, match="not covered by --types"):
        read_trajectory(plain, types=["Ge"])


def test_dump_atoms_in_any_order_are_sorted_by_id(gete_dump, tmp_path):
    dump, _ = gete_dump
    lines = dump.read_text().splitlines()
    rng = np.random.default_rng(3)
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith("ITEM: ATOMS"):
            atoms = lines[i + 1:i + 201]
            out += [lines[i]] + [atoms[k] for k in rng.permutation(200)]
            i += 201
        else:
            out.append(lines[i])
            i += 1
    shuffled = tmp_path / "shuffled.lammpstrj"
    shuffled.write_text("\n".join(out) + "\n")
    a, b = read_trajectory(dump), read_trajectory(shuffled)
    assert a.symbols == b.symbols
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.positions, fb.positions)
        np.testing.assert_array_equal(fa.forces, fb.forces)


@pytest.mark.parametrize("coords", ["xs", "xu", "xsu"])
def test_dump_scaled_and_unwrapped_coordinates(gete, tmp_path, coords):
    ref = read_trajectory(GETE_TEST)
    dump = write_lammps_dump(tmp_path / f"{coords}.lammpstrj", ref.frames(0, 3), ref.symbols,
                             coords=coords)
    t = read_trajectory(dump)
    assert f"{coords} " in dump.read_text()
    for k, f in enumerate(t):
        d = f.positions - gete["pos"][k]
        d -= np.round(d / 19.1) * 19.1  # LAMMPS wraps into the box
        assert np.abs(d).max() < 5e-6


def test_triclinic_dump_written_by_lammps_keeps_the_structure(gete, tmp_path):
    pos, cell = triclinic_gete(gete, 4)
    src = read_trajectory(write_npz(tmp_path / "tri.npz", pos, gete["atomic_numbers"], cell,
                                    forces=gete["forces"][:4]))
    dump = write_lammps_dump(tmp_path / "tri.lammpstrj", src, src.symbols)
    assert "xy xz yz" in dump.read_text().splitlines()[4]
    t = read_trajectory(dump)
    assert t[0].volume == pytest.approx(src[0].volume, rel=1e-6)  # MDAnalysis: float32 box
    # LAMMPS rotates the cell (a along x), so compare rotation-invariant quantities
    g_src = RDF(src, rmax=8.0).run().results.rdf
    g_dump = RDF(t, rmax=8.0).run().results.rdf
    for key in g_src:
        assert np.abs(g_src[key] - g_dump[key]).max() < 0.2, key  # float32 bin flips only
        assert np.abs(g_src[key] - g_dump[key]).mean() < 2e-3, key
    f0 = t[0]
    np.testing.assert_allclose(np.linalg.norm(f0.forces, axis=1),
                               np.linalg.norm(gete["forces"][0], axis=1), atol=1e-5)


def test_dump_energy_from_a_per_atom_column(gete_dump, tmp_path):
    dump, _ = gete_dump
    lines = dump.read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("ITEM: ATOMS"):
            out.append(line + " c_pe")
        elif len(line.split()) == 9:
            out.append(line + " -0.5")
        else:
            out.append(line)
    p = tmp_path / "pe.lammpstrj"
    p.write_text("\n".join(out) + "\n")
    t = read_trajectory(p, energy_column="c_pe")
    assert t[3].energy == pytest.approx(-100.0)
    with pytest.raises(EgraffError, match="no dump column 'c_q'"):
        read_trajectory(p, energy_column="c_q")


def test_extxyz_reader_takes_energy_and_forces(tmp_path):
    import ase.io

    t = read_trajectory(ACAC)
    assert (t.format, t.n_frames, t.n_atoms, t.species) == ("extxyz", 650, 15, ["C", "H", "O"])
    atoms = ase.io.read(ACAC, index=17)
    f = t[17]
    assert f.energy == atoms.get_potential_energy()
    np.testing.assert_array_equal(f.forces, atoms.get_forces())
    assert f.cell is None and f.pbc == (False, False, False)
    # other key names
    a = ase.io.read(ACAC, index=0)
    a.info["dft_energy"] = -5.0
    a.arrays["dft_forces"] = np.ones((15, 3))
    a.calc = None
    ase.io.write(tmp_path / "k.xyz", a, format="extxyz")
    g = read_trajectory(tmp_path / "k.xyz", energy_key="dft_energy", forces_key="dft_forces")[0]
    assert g.energy == -5.0 and np.all(g.forces == 1.0)


def _write_deepmd(root, gete, nopbc=False):
    root.mkdir()
    type_map = ["Ge", "Te"]
    (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    types = (gete["atomic_numbers"] == 52).astype(int)
    (root / "type.raw").write_text("\n".join(map(str, types)) + "\n")
    for k, sl in enumerate((slice(0, 4), slice(4, 7))):
        s = root / f"set.{k:03d}"
        s.mkdir()
        n = sl.stop - sl.start
        np.save(s / "coord.npy", gete["pos"][sl].reshape(n, -1))
        np.save(s / "box.npy", np.tile(gete["cell"].reshape(1, 9), (n, 1)))
        np.save(s / "energy.npy", gete["energy"][sl, 0])
        np.save(s / "force.npy", gete["forces"][sl].reshape(n, -1))
    if nopbc:
        (root / "nopbc").write_text("")
    return root


def test_deepmd_reader_reads_sets_in_order(gete, tmp_path):
    t = read_trajectory(_write_deepmd(tmp_path / "sys", gete))
    assert (t.format, t.n_frames, t.species) == ("deepmd", 7, ["Ge", "Te"])
    for k, f in enumerate(t):
        np.testing.assert_array_equal(f.positions, gete["pos"][k])
        np.testing.assert_array_equal(f.forces, gete["forces"][k])
        assert f.energy == gete["energy"][k, 0]
    assert read_trajectory(_write_deepmd(tmp_path / "np", gete, nopbc=True))[0].cell is None


def test_reading_streams_memory_does_not_grow_with_frames(gete_dump):
    def peak(traj, stop):
        tracemalloc.start()
        for f in traj.frames(0, stop):
            assert isinstance(f, Frame)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    npz = read_trajectory(GETE_TEST)
    p10, p300 = peak(npz, 10), peak(npz, 300)
    assert p300 < 1.5 * p10 + 50_000  # whole 'pos' would be 1.4 MB more
    dump = read_trajectory(gete_dump[0])
    d2, d20 = peak(dump, 2), peak(dump, 20)
    assert d20 < 1.5 * d2 + 50_000


def test_data_file_from_a_frame_is_read_back_by_lammps(gete, tmp_path):
    from egraff_lmp.lammps.env import start_lammps

    ref = read_trajectory(GETE_TEST)
    write_lammps_data(tmp_path / "g.data", ref[0], ref.symbols)
    lmp = start_lammps()
    lmp.commands_list(["units metal", "atom_style atomic", f"read_data {tmp_path / 'g.data'}"])
    assert lmp.get_natoms() == 200
    assert lmp.extract_global("ntypes") == 2
    lmp.close()
