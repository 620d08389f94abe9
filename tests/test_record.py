"""The typed hand-off between run and evaluate: RunSpec and RunRecord, versioned on disk,
and run directories written before the versions existed."""

from __future__ import annotations

import json

import pytest

from egraff_lmp.errors import EgraffError
from egraff_lmp.run import RunRecord, RunSpec, Watch
from egraff_lmp.run.__main__ import main as run_spec_main


def test_run_spec_round_trips_through_its_versioned_json(tmp_path):
    spec = RunSpec(input="/x/gete.in", rundir=str(tmp_path / "r"), variables={"steps": "20"},
                   engine="plugin", np=2, device="cpu", pair_mode="staged",
                   watch=Watch(every=5, max_force=10.0), restart_every=50)
    path = spec.save(tmp_path / "spec.json")
    d = json.loads(path.read_text())
    assert d["format"] == "egraff-lmp-run-spec" and d["version"] == 1
    assert RunSpec.load(path) == spec
    d["version"] = 2
    path.write_text(json.dumps(d))
    with pytest.raises(EgraffError, match="not a run spec this egraff-lmp reads"):
        RunSpec.load(path)


def test_run_record_saves_and_loads_with_its_spec(tmp_path):
    spec = RunSpec(input="/x/gete.in", rundir=str(tmp_path))
    rec = RunRecord(spec=spec, engine="plugin", engine_reason="asked for", status="ok",
                    steps_requested=20, steps_done=20, ms_per_step=12.5,
                    runs=[{"steps": 20, "ms_per_step": 12.5, "setup_ms": 40.0}],
                    symbols=["Ge", "Te"], pair_mode="images", warnings=["w"],
                    metrics={"wf": 1.0})
    rec.save()
    d = json.loads((tmp_path / "run.json").read_text())
    assert d["format"] == "egraff-lmp-run" and d["spec"]["input"] == "/x/gete.in"
    assert "metrics" not in d  # metrics.json holds those
    back = RunRecord.load(tmp_path)
    assert back == rec and back.metrics is None and back.finished
    assert back.dump == tmp_path / "dump.lammpstrj"


def test_run_json_of_earlier_versions_is_read(tmp_path):
    """Before versions, run.json was one flat dict: spec fields at the top level."""
    old = {"input": "/x/gete.in", "rundir": str(tmp_path), "engine": "callback",
           "engine_reason": "asked for", "np": 1, "variables": {"steps": 10},
           "pair_mode_requested": None, "device": "cpu", "calculator": "m:f",
           "restart_every": 5, "watch": {"every": 10, "max_force": 50.0, "temp_factor": 3.0,
                                          "max_temp": None},
           "ref": None, "versions": {"lammps": "x"}, "started_at": "t", "status": "failed",
           "steps_requested": 10, "steps_done": 5, "runs": [], "failed_at_step": 5,
           "failure": "largest force", "ms_per_step": 3.0, "target_temperature": 900.0,
           "symbols": ["Ar"], "artifact": "/a.pt", "timestep_ps": 0.001, "n_atoms": 4,
           "energy_drift": None, "finished_at": "t2"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    rec = RunRecord.load(tmp_path)
    assert rec.spec.engine == "callback" and rec.spec.calculator == "m:f"
    assert rec.spec.variables == {"steps": "10"} and rec.spec.restart_every == 5
    assert (rec.status, rec.failed_at_step, rec.failure) == ("failed", 5, "largest force")
    assert rec.finished and rec.symbols == ["Ar"]


@pytest.mark.parametrize("text", ["{}", "not json", json.dumps({"format": "other"})])
def test_anything_else_is_not_a_run_directory(tmp_path, text):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(EgraffError):
        RunRecord.load(tmp_path)


def test_a_saved_spec_runs_as_a_module_and_says_why_not_in_one_line(tmp_path, capsys):
    spec = RunSpec(input=str(tmp_path / "missing.in"), rundir=str(tmp_path / "r"))
    path = spec.save(tmp_path / "spec.json")
    assert run_spec_main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such LAMMPS input file" in err[0]


def test_static_errors_cached_by_an_earlier_version_are_read_with_their_units(tmp_path):
    """An evaluation directory of an earlier egraff-lmp kept its static errors under
    e_mae/f_mae (meV); resuming it reads them under the keys that name the unit."""
    from types import SimpleNamespace

    from egraff_lmp.evaluate.collect import static_errors

    cache = tmp_path / "static" / "mace" / "gete.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"frames": 3, "e_mae": 12.0, "e_mae_per_atom": 0.06,
                                 "f_mae": 150.0, "ev_static": 1e-8, "fv_static": 0.3}))
    out = static_errors(SimpleNamespace(name="mace"), SimpleNamespace(label="gete"), None,
                        tmp_path)
    assert (out["e_mae_mev"], out["e_mae_mev_per_atom"], out["f_mae_mev_per_a"]) == (
        12.0, 0.06, 150.0)
    assert "e_mae" not in out and out["fv_static"] == 0.3
