"""Other people's LAMMPS dumps: compressed (found by content, not suffix), boxes that change
between frames (NPT), slabs; and, where MDAnalysis' own test data are installed, every dump
of theirs that has coordinates."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest

from egraff_lmp.analysis import RDF
from egraff_lmp.cli import main
from egraff_lmp.errors import EgraffError
from egraff_lmp.io import detect_format, read_trajectory


@pytest.mark.parametrize("name,opener", [
    ("gete.lammpstrj.gz", gzip.open),
    ("gete.lammpstrj_long.bz2", bz2.open),  # a suffix that names no format
    ("gete.dat", gzip.open),  # a compressed dump with no telling suffix at all
])
def test_compressed_dumps_are_read_by_content(gete_dump, tmp_path, name, opener):
    dump, log = gete_dump
    packed = tmp_path / name
    with opener(packed, "wb") as f:
        f.write(dump.read_bytes())
    plain = read_trajectory(dump, types=["Ge", "Te"])
    assert detect_format(packed) == "lammps-dump"
    for fmt in (None, "lammps-dump"):
        traj = read_trajectory(packed, format=fmt, types=["Ge", "Te"])
        assert traj.n_frames == plain.n_frames == 20
        for i in (0, 13, 19):
            np.testing.assert_array_equal(traj[i].positions, plain[i].positions)
            np.testing.assert_array_equal(traj[i].forces, plain[i].forces)


def test_xz_compressed_dump_is_one_clear_line(gete_dump, tmp_path, capsys):
    dump, _ = gete_dump
    packed = tmp_path / "gete.lammpstrj.xz"
    packed.write_bytes(lzma.compress(dump.read_bytes()))
    code = main(["analyze", str(packed), "--format", "lammps-dump", "--types", "Ge,Te"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "xz-compressed" in err[0]


def _npt_dump(dump: Path, out: Path, scale: float) -> Path:
    """The GeTe dump with frame 1's box and atoms scaled by ``scale`` (an NPT step)."""
    text = dump.read_text()
    frames = text.split("ITEM: TIMESTEP")[1:3]
    lines = frames[1].splitlines()
    k = next(i for i, x in enumerate(lines) if x.startswith("ITEM: BOX BOUNDS"))
    for j in range(k + 1, k + 4):
        lo, hi = (float(v) for v in lines[j].split()[:2])
        lines[j] = f"{lo * scale} {hi * scale}"
    a = next(i for i, x in enumerate(lines) if x.startswith("ITEM: ATOMS"))
    cols = lines[a].split()[2:]
    for j in range(a + 1, len(lines)):
        w = lines[j].split()
        for c in ("x", "y", "z"):
            w[cols.index(c)] = repr(float(w[cols.index(c)]) * scale)
        lines[j] = " ".join(w)
    out.write_text("ITEM: TIMESTEP" + frames[0] + "ITEM: TIMESTEP" + "\n".join(lines) + "\n")
    return out


def test_a_box_that_shrinks_after_the_first_frame_sets_the_default_rmax(gete_dump, tmp_path):
    """The default r_max is half the smallest box over the selected frames (known from the
    pre-scan), not the first frame's: an NPT dump is analysed without --rmax."""
    dump, _ = gete_dump
    npt = _npt_dump(dump, tmp_path / "npt.lammpstrj", 0.9)
    traj = read_trajectory(npt, types=["Ge", "Te"])
    assert traj[1].cell[0, 0] == pytest.approx(0.9 * traj[0].cell[0, 0])
    half = 0.9 * 19.1 / 2  # the bins end at the last whole dr below it
    assert half - 0.05 < RDF(traj).run().results.rmax <= half
    assert RDF(traj).run(0, 1).results.rmax == pytest.approx(19.1 / 2)  # frame 0 alone


def test_a_slab_is_refused_with_what_to_do(gete_dump, tmp_path):
    dump, _ = gete_dump
    slab = tmp_path / "slab.lammpstrj"
    slab.write_text(dump.read_text().replace("ITEM: BOX BOUNDS pp pp pp",
                                             "ITEM: BOX BOUNDS pp pp ff"))
    with pytest.raises(EgraffError, match="pp pp ff.*'ff' \\(shrink-wrapped\\)"):
        read_trajectory(slab, types=["Ge", "Te"])


ELEMENTS = ["H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P",
            "S", "Cl", "Ar"]  # LAMMPS types 1, 2, ... of dumps that name no elements


def _mdanalysis_dumps():
    try:
        from MDAnalysisTests.datafiles import __file__ as where
    except ImportError:
        return []
    d = Path(where).parent / "data" / "lammps"
    return sorted(p for p in d.iterdir() if "lammpstrj" in p.name or p.suffix == ".dump")


@pytest.mark.parametrize("path", _mdanalysis_dumps() or [None],
                         ids=lambda p: p.name if p else "not-installed")
def test_mdanalysis_test_dumps_with_coordinates_are_read(path):
    """MDAnalysis' own LAMMPS test dumps (MDAnalysisTests, optional: pip install
    MDAnalysisTests): every one with coordinates is read (types as ELEMENTS), except two
    that are refused in one line that says why: a slab (``pp pp ff``: what to do instead)
    and ``wat.lammpstrj_long.bz2``, MDAnalysis' test of uneven columns (6 fields under a
    5-column header: which field is x is not known)."""
    if path is None:
        pytest.skip("MDAnalysisTests is not installed")
    try:
        traj = read_trajectory(path, format="lammps-dump", types=ELEMENTS)
    except EgraffError as exc:
        if "no coordinate columns" in str(exc):
            pytest.skip(str(exc))
        if path.name == "wat.lammpstrj_long.bz2":
            assert "atom line 1: 6 fields for 5 columns" in str(exc)
            return
        if path.name == "additional_columns.lammpstrj":
            assert "pp pp ff (a slab or a wire)" in str(exc) and "'ff'" in str(exc)
            return
        raise
    assert traj.n_frames >= 1 and traj.n_atoms >= 1
    frame = traj[traj.n_frames - 1]
    assert np.all(np.isfinite(frame.positions))
    res = RDF(traj).run().results  # what 'egraff-lmp analyze' does with it
    assert res.n_frames == traj.n_frames and np.all(np.isfinite(res.rdf["total"]))
