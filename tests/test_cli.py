"""The command line: outputs, and one line + exit 2 for each kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ACAC, GETE_TEST, GETE_VAL, write_npz

from egraff_lmp.cli import main


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_writes_the_json_contract_and_a_plot(tmp_path, capsys):
    code, out, err = run_cli(capsys, "analyze", GETE_TEST, "--stop", 20, "--json",
                             tmp_path / "a.json", "--plot", tmp_path / "a.png")
    assert code == 0, err
    data = json.loads((tmp_path / "a.json").read_text())
    assert list(data["rdf"]) == ["total", "Ge-Ge", "Ge-Te", "Te-Te"]
    assert data["n_frames"] == 20 and data["n_atoms"] == 200
    assert len(data["r"]) == len(data["rdf"]["total"]) == 191
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "Ge-Te" in out


def test_compare_writes_the_json_contract_table_and_plot(tmp_path, capsys):
    code, out, err = run_cli(capsys, "compare", GETE_VAL, "--ref", GETE_TEST, "--stop", 50,
                             "--json", tmp_path / "c.json", "--plot", tmp_path / "c.png")
    assert code == 0, err
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["format"] == "egraff-lmp-comparison" and data["version"] == 1
    for key in ("wf_percent", "wf_sqrt_percent", "jsd_nats", "wf_pairs_percent",
                "jsd_pairs_nats", "ev", "ev_std", "fv", "fv_std", "ev_t", "fv_t",
                "n_frames_compared", "e_mae_ev", "e_mae_ev_per_atom", "f_mae_ev_per_a",
                "rmax_a", "dr_a", "r_a"):
        assert key in data, key
    assert set(data["wf_pairs_percent"]) == {"Ge-Ge", "Ge-Te", "Te-Te"}
    assert data["n_frames_compared"] == 50 and len(data["fv_t"]) == 50
    assert "FV (gm ± std)" in out and "Te-Te" in out
    assert (tmp_path / "c.png").stat().st_size > 10_000


def test_console_script_runs_as_a_subprocess(tmp_path):
    r = subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "analyze", str(ACAC),
                        "--stop", "5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "C-H" in r.stdout


def test_count_mismatch_is_a_note_not_an_error(gete, tmp_path, capsys):
    numbers = gete["atomic_numbers"][:100]
    small = write_npz(tmp_path / "s.npz", gete["pos"][:3, :100], numbers, gete["cell"])
    code, out, err = run_cli(capsys, "compare", small, "--ref", GETE_TEST, "--stop", 3)
    assert code == 0
    assert "EV/FV and MAE not computed: atom counts differ (100 vs 200)" in err


# -- bad inputs: one line on stderr, exit 2, no traceback ------------------------------------

def _dump_lines(gete_dump):
    return gete_dump[0].read_text().splitlines()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def bad_truncated(tmp_path, gete_dump, gete):
    lines = _dump_lines(gete_dump)
    return ["analyze", _write(tmp_path / "t.lammpstrj", lines[:3 * 209 + 100])], \
        "truncated in frame 3"


def bad_non_numeric(tmp_path, gete_dump, gete):
    lines = _dump_lines(gete_dump)
    lines[5 * 209 + 20] = lines[5 * 209 + 20].replace(lines[5 * 209 + 20].split()[4], "abc", 1)
    return ["analyze", _write(tmp_path / "n.lammpstrj", lines)], "frame 5 (step 50): unreadable"


def bad_missing_columns(tmp_path, gete_dump, gete):
    lines = [ln.replace("ITEM: ATOMS id type element x y z", "ITEM: ATOMS id type element a b c")
             for ln in _dump_lines(gete_dump)]
    return ["analyze", _write(tmp_path / "m.lammpstrj", lines)], "no coordinate columns"


def bad_count_change(tmp_path, gete_dump, gete):
    lines = _dump_lines(gete_dump)
    lines = lines[:2 * 209] + [ln if ln != "200" else "199" for ln in lines[2 * 209:3 * 209]][:-1]
    return ["analyze", _write(tmp_path / "c.lammpstrj", lines)], \
        "atom count changes from 200 to 199 in frame 2"


def bad_unknown_type(tmp_path, gete_dump, gete):
    lines = []
    for ln in _dump_lines(gete_dump):
        w = ln.split()
        lines.append(" ".join(w[:2] + w[3:]) if len(w) == 9 else
                     ln.replace(" element", ""))
    return ["analyze", _write(tmp_path / "u.lammpstrj", lines)], \
        "atom type(s) 1, 2 have no element: give --types"


def bad_unknown_element(tmp_path, gete_dump, gete):
    return ["analyze", gete_dump[0], "--types", "Ge,Xq"], "unknown element symbol(s): Xq"


def bad_unknown_element_in_dump(tmp_path, gete_dump, gete):
    lines = [ln.replace(" Te ", " Tq ") for ln in _dump_lines(gete_dump)]
    return ["analyze", _write(tmp_path / "e.lammpstrj", lines)], "unknown element symbol(s): Tq"


def bad_species_differ(tmp_path, gete_dump, gete):
    numbers = np.where(gete["atomic_numbers"] == 52, 34, 32)
    p = write_npz(tmp_path / "se.npz", gete["pos"][:2], numbers, gete["cell"])
    return ["compare", p, "--ref", GETE_TEST], "has species Ge,Se but the reference"


def bad_empty(tmp_path, gete_dump, gete):
    (tmp_path / "empty.lammpstrj").write_text("")
    return ["analyze", tmp_path / "empty.lammpstrj"], "empty file"


def bad_rmax(tmp_path, gete_dump, gete):
    return ["analyze", GETE_TEST, "--rmax", "12"], "exceeds half the smallest cell width"


def bad_nan(tmp_path, gete_dump, gete):
    pos = gete["pos"][:3].copy()
    pos[2, 7, 1] = np.nan
    p = write_npz(tmp_path / "nan.npz", pos, gete["atomic_numbers"], gete["cell"])
    return ["analyze", p], "frame 2 has non-finite (NaN/inf) coordinates"


def bad_nan_in_dump(tmp_path, gete_dump, gete):
    lines = _dump_lines(gete_dump)
    w = lines[209 + 30].split()
    w[4] = "nan"
    lines[209 + 30] = " ".join(w)
    return ["analyze", _write(tmp_path / "nan.lammpstrj", lines)], "frame 1 has non-finite"


def bad_not_deepmd(tmp_path, gete_dump, gete):
    (tmp_path / "dir").mkdir()
    return ["analyze", tmp_path / "dir"], "a directory that is not a DeePMD system"


def bad_npz_without_pos(tmp_path, gete_dump, gete):
    np.savez(tmp_path / "nopos.npz", positions=gete["pos"][:2],
             atomic_numbers=gete["atomic_numbers"])
    return ["analyze", tmp_path / "nopos.npz"], "no 'pos' array"


def bad_missing_file(tmp_path, gete_dump, gete):
    return ["analyze", tmp_path / "nothere.npz"], "no such file or directory"


def bad_not_an_npz(tmp_path, gete_dump, gete):
    (tmp_path / "x.npz").write_text("hello")
    return ["analyze", tmp_path / "x.npz"], "not a readable .npz file"


BAD = [bad_truncated, bad_non_numeric, bad_missing_columns, bad_count_change, bad_unknown_type,
       bad_unknown_element, bad_unknown_element_in_dump, bad_species_differ, bad_empty,
       bad_rmax, bad_nan, bad_nan_in_dump, bad_not_deepmd, bad_npz_without_pos,
       bad_missing_file, bad_not_an_npz]


@pytest.mark.parametrize("case", BAD, ids=[f.__name__[4:] for f in BAD])
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path, gete_dump, gete, capsys):
    argv, message = case(tmp_path, gete_dump, gete)
    out_json = tmp_path / "out.json"
    code, out, err = run_cli(capsys, *argv, "--json", out_json)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("egraff-lmp: error: "), err
    assert message in err, err
    assert "Traceback" not in err
    assert not out_json.exists()  # nothing half-written


def test_bad_input_keeps_an_existing_result_file(tmp_path, capsys):
    out_json = tmp_path / "keep.json"
    out_json.write_text('{"old": 1}')
    code, _, _ = run_cli(capsys, "analyze", GETE_TEST, "--rmax", "50", "--json", out_json)
    assert code == 2
    assert out_json.read_text() == '{"old": 1}'
