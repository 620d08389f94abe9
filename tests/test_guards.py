"""Physical guards a LAMMPS user expects, and set-ups around the model: pair_style hybrid,
units, masses, timestep, device; with real LAMMPS, the plugin and egraff-lmp run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import GETE_TEST
from test_plugin import run_lmp
from test_staged import _dump_rows, _lmp_error

from egraff_lmp.cli import main
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.io.lammps_write import write_lammps_data
from egraff_lmp.run.guards import mass_warnings, timestep_bound_fs, timestep_warnings


@pytest.fixture
def gete_data(tmp_path):
    ref = read_trajectory(GETE_TEST)
    write_lammps_data(tmp_path / "gete.data", ref[7], ref.symbols)
    return tmp_path / "gete.data"


HEAD = """
units metal
atom_style atomic
atom_modify map array
read_data gete.data
plugin load ${plugin}
"""
TAIL = """
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.15g
dump d all custom 1 dump.${tag} id fx fy fz
dump_modify d sort id format float %20.15g
run 0
"""
STYLES = {
    "egraff": "pair_style egraff ${artifact}\npair_coeff * * Ge Te",
    "zbl": "pair_style zbl 2.4 3.0\npair_coeff 1 1 32 32\npair_coeff 1 2 32 52\n"
           "pair_coeff 2 2 52 52",
    "overlay": "pair_style hybrid/overlay egraff ${artifact} zbl 2.4 3.0\n"
               "pair_coeff * * egraff Ge Te\npair_coeff 1 1 zbl 32 32\n"
               "pair_coeff 1 2 zbl 32 52\npair_coeff 2 2 zbl 52 52",
    "hybrid-te": "pair_style hybrid egraff ${artifact} zbl 2.4 3.0\n"
                 "pair_coeff * * egraff Ge Te\npair_coeff 2 2 zbl 52 52",
}
COLUMNS = ("PotEng", "Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")


def _styles(tmp_path, plugin, artifact, name, ranks):
    log = run_lmp(tmp_path, HEAD + STYLES[name] + TAIL, ranks, name=f"{name}.lmp",
                  plugin=plugin, artifact=artifact, tag=name)
    thermo = {k: v[0] for k, v in read_thermo(log)[-1].items()}
    return thermo, _dump_rows(tmp_path / f"dump.{name}")


@pytest.mark.parametrize("kind", ["mace", "allegro"])
@pytest.mark.parametrize("ranks", [1, 2])
def test_hybrid_overlay_equals_the_styles_computed_apart(kind, ranks, plugin, artifacts,
                                                        gete_data, tmp_path):
    """hybrid/overlay egraff + zbl: energy, forces and the pressure tensor are the sums of
    the two styles run alone (the virial under hybrid included: egraff computes its own)."""
    model, _ = _styles(tmp_path, plugin, artifacts[kind], "egraff", ranks)
    zbl, fz = _styles(tmp_path, plugin, artifacts[kind], "zbl", ranks)
    both, fb = _styles(tmp_path, plugin, artifacts[kind], "overlay", ranks)
    _, fm = _styles(tmp_path, plugin, artifacts[kind], "egraff", ranks)
    assert abs(zbl["PotEng"]) > 1e-3 and np.abs(fz).max() > 1e-3  # zbl does act
    for key in COLUMNS:
        assert both[key] == pytest.approx(model[key] + zbl[key], rel=1e-9, abs=1e-6), key
    np.testing.assert_allclose(fb, fm + fz, atol=1e-8)


def test_plain_hybrid_with_a_type_left_to_another_style(plugin, artifacts, gete_data,
                                                        tmp_path):
    """pair_style hybrid egraff ... zbl with the Te-Te pairs given to zbl: egraff sees the
    pairs hybrid leaves it (a skip list), zbl the rest; 1 and 2 ranks agree."""
    a, fa = _styles(tmp_path, plugin, artifacts["mace"], "hybrid-te", 1)
    b, fb = _styles(tmp_path, plugin, artifacts["mace"], "hybrid-te", 2)
    for key in COLUMNS:
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-6), key
    np.testing.assert_allclose(fb, fa, atol=1e-8)


RUN_HYBRID = """
variable model index {artifact}
units metal
atom_style atomic
read_data gete.data
pair_style hybrid/overlay egraff ${{model}} zbl 2.4 3.0
pair_coeff * * egraff Ge Te
pair_coeff 1 1 zbl 32 32
pair_coeff 1 2 zbl 32 52
pair_coeff 2 2 zbl 52 52
velocity all create 900 1 dist gaussian
timestep 0.001
fix 1 all nve
thermo 5
dump d all custom 5 ${{rundir}}/dump.lammpstrj id type x y z fx fy fz
run 10
"""


def test_run_reads_its_dump_under_hybrid_and_callback_refuses(artifacts, gete_data,
                                                              tmp_path, capsys):
    inp = tmp_path / "hybrid.in"
    inp.write_text(RUN_HYBRID.format(artifact=artifacts["mace"]))
    code = main(["run", str(inp), "-o", str(tmp_path / "r"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rec = json.loads((tmp_path / "r" / "run.json").read_text())
    assert rec["symbols"] == ["Ge", "Te"] and rec["artifact"] == str(artifacts["mace"])
    dump = read_trajectory(tmp_path / "r" / "dump.lammpstrj", types=rec["symbols"])
    assert dump.n_frames == 3 and dump.species == ["Ge", "Te"]
    code = main(["run", str(inp), "-o", str(tmp_path / "c"), "--engine", "callback",
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cannot run pair_style egraff inside hybrid/overlay" in err


def test_the_plugin_refuses_units_lj_in_one_line(plugin, artifacts, gete_data, tmp_path):
    text = (HEAD + STYLES["egraff"] + TAIL).replace("units metal", "units lj")
    line = _lmp_error(tmp_path, text, plugin=plugin, artifact=artifacts["mace"], tag="x")
    assert "units lj has no physical units" in line and "use units metal, real" in line


def test_callback_engine_refuses_units_real(artifacts, gete_data, tmp_path, capsys):
    inp = tmp_path / "real.in"
    inp.write_text(RUN_HYBRID.format(artifact=artifacts["mace"])
                   .replace("units metal", "units real")
                   .replace("pair_style hybrid/overlay egraff ${model} zbl 2.4 3.0",
                            "pair_style egraff ${model}")
                   .replace("pair_coeff * * egraff Ge Te", "pair_coeff * * Ge Te")
                   .replace("pair_coeff 1 1 zbl 32 32\npair_coeff 1 2 zbl 32 52\n"
                            "pair_coeff 2 2 zbl 52 52\n", ""))
    code = main(["run", str(inp), "-o", str(tmp_path / "r"), "--engine", "callback",
                 "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and "units real" in err and "units metal" in err


def test_swapped_masses_and_a_long_timestep_are_warned(plugin, artifacts, gete_data,
                                                      tmp_path, capsys):
    """Masses of the data file swapped against pair_coeff's elements, and a 10 fs step
    (above 8.5 fs = 1 fs × sqrt(72.6) for Ge): a warning each, in LAMMPS' log and in
    egraff-lmp run's output and run.json; the run itself goes on."""
    text = gete_data.read_text()
    masses = re.search(r"Masses\s+1\s+(\S+).*?\n\s*2\s+(\S+)", text, re.S)
    m1, m2 = masses.group(1), masses.group(2)
    text = re.sub(r"(Masses\s+1\s+)\S+(.*?\n\s*2\s+)\S+", rf"\g<1>{m2}\g<2>{m1}", text,
                  flags=re.S)
    gete_data.write_text(text)
    inp = tmp_path / "warn.in"
    inp.write_text(RUN_HYBRID.format(artifact=artifacts["mace"])
                   .replace("timestep 0.001", "timestep 0.010").replace("run 10", "run 2"))
    code = main(["run", str(inp), "-o", str(tmp_path / "r"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    warnings = [x for x in err.splitlines() if x.startswith("egraff-lmp: warning:")]
    assert len(warnings) == 3, err  # type 1, type 2, timestep
    assert "type 1 has mass 127.6 amu but pair_coeff makes it Ge" in warnings[0]
    assert "timestep 10 fs is above 8.52 fs" in warnings[2] and "Ge" in warnings[2]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["warnings"] == [
        w.split("warning: ", 1)[1] for w in warnings]
    log = (tmp_path / "r" / "log.lammps").read_text()
    assert log.count("WARNING: pair_style egraff: type 1 has mass") == 1
    assert "WARNING: pair_style egraff: timestep 10 fs" in log


def test_guard_functions_by_hand():
    assert mass_warnings(["Ge", "Te"], [72.63, 127.6]) == []
    assert len(mass_warnings(["Te", "Ge"], [72.63, 127.6])) == 2
    assert mass_warnings(["H"], [2.014])  # deuterium is flagged: say so if meant
    assert timestep_bound_fs(["O", "H"]) == (pytest.approx(1.004, abs=1e-3), "H")
    assert timestep_warnings(["O", "H"], 1.0) == []
    assert "lightest element, H" in timestep_warnings(["O", "H"], 1.5)[0]
    assert timestep_warnings(["Ge", "Te"], 4.0) == []


def test_cuda_asked_for_on_a_cpu_torch_is_one_clear_error(plugin, artifacts, gete_data,
                                                          tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA: the GPU path is tested on a GPU machine")
    text = (HEAD + STYLES["egraff"] + TAIL).replace("pair_style egraff ${artifact}",
                                                   "pair_style egraff ${artifact} device cuda")
    line = _lmp_error(tmp_path, text, plugin=plugin, artifact=artifacts["mace"], tag="x")
    assert "CUDA asked for, this torch has none" in line
    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.errors import EgraffError

    with pytest.raises(EgraffError, match="CUDA asked for, this torch has none"):
        DeployedCalculator(artifacts["mace"], device="cuda")
    inp = tmp_path / "gpu.in"
    inp.write_text(RUN_HYBRID.format(artifact=artifacts["mace"]))
    for engine in ("plugin", "callback", "ase"):
        code = main(["run", str(inp), "-o", str(tmp_path / engine), "--device", "cuda",
                     "--engine", engine, "--no-progress"])
        _, err = capsys.readouterr()
        assert code == 2 and "CUDA asked for, this torch has none" in err, engine
