"""The typed hand-off between run and evaluate: RunSpec, RunStatus and RunRecord, versioned
on disk, and run directories written by earlier versions."""

from __future__ import annotations

import json

import pytest

from egraff_lmp.errors import EgraffError
from egraff_lmp.run import RunRecord, RunSpec, RunStatus, Watch
from egraff_lmp.run.__main__ import main as run_spec_main
from egraff_lmp.run.record import RunPart


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
    result = RunStatus(steps_requested=20, steps_done=20, ms_per_step=12.5,
                       runs=[RunPart(steps=20, ms_per_step=12.5, setup_ms=40.0)],
                       target_temperature_k=920.0, symbols=["Ge", "Te"], pair_mode="images",
                       warnings=["w"])
    rec = RunRecord(spec=spec, engine="plugin", engine_reason="asked for", status="ok",
                    result=result, metrics={"wf": 1.0})
    rec.save()
    d = json.loads((tmp_path / "run.json").read_text())
    assert d["format"] == "egraff-lmp-run" and d["version"] == 2
    assert d["spec"]["input"] == "/x/gete.in"
    # the status' fields at the top level, as every version of run.json had them
    assert d["steps_done"] == 20 and d["target_temperature_k"] == 920.0
    assert d["runs"] == [{"steps": 20, "ms_per_step": 12.5, "setup_ms": 40.0}]
    assert "metrics" not in d  # metrics.json holds those
    back = RunRecord.load(tmp_path)
    assert back == rec and back.metrics is None and back.finished
    assert back.result.runs[0] == RunPart(20, 12.5, 40.0)
    assert back.steps_done == 20 and back.symbols == ["Ge", "Te"]  # read through the record
    assert back.dump == tmp_path / "dump.lammpstrj"
    with pytest.raises(AttributeError):
        back.no_such_field  # noqa: B018


def test_run_status_round_trips_through_its_versioned_json():
    """What rank 0 hands the launcher under mpiexec."""
    status = RunStatus(steps_requested=10, steps_done=5, failed_at_step=5,
                       failure="largest force", runs=[RunPart(5, 3.0, 20.0)],
                       target_temperature_k=300.0, timestep_ps=0.001, n_atoms=4)
    d = json.loads(json.dumps(status.to_dict()))
    assert d["format"] == "egraff-lmp-run-status" and d["version"] == 1
    assert RunStatus.from_dict(d) == status
    with pytest.raises(EgraffError, match="not a run status this egraff-lmp reads"):
        RunStatus.from_dict({**d, "version": 2})
    with pytest.raises(EgraffError, match="not a run status"):
        RunStatus.from_dict({**d, "format": "egraff-lmp-run-spec"})


def test_run_json_version_1_is_read(tmp_path):
    """Version 1 of run.json named the target temperature without its unit."""
    spec = RunSpec(input="/x/gete.in", rundir=str(tmp_path))
    old = {"format": "egraff-lmp-run", "version": 1, "spec": spec.to_dict(),
           "engine": "ase", "engine_reason": "asked for", "status": "ok",
           "steps_requested": 20, "steps_done": 20, "failed_at_step": None, "failure": None,
           "error": None, "ms_per_step": 54.6, "runs": [{"steps": 20, "ms_per_step": 54.6}],
           "target_temperature": 920.0, "symbols": ["Ge", "Te"], "artifact": "/a.pt",
           "timestep_ps": 0.00119, "n_atoms": 200, "pair_mode": None, "warnings": [],
           "energy_drift": {"ev_per_ps": -0.26}, "versions": {"lammps": "x"},
           "started_at": "t", "finished_at": "t2", "resumed_from_step": None,
           "resumed_at": None}
    (tmp_path / "run.json").write_text(json.dumps(old))
    rec = RunRecord.load(tmp_path)
    assert rec.result.target_temperature_k == 920.0 and rec.result.n_atoms == 200
    assert rec.result.runs == [RunPart(steps=20, ms_per_step=54.6, setup_ms=None)]
    assert rec.energy_drift == {"ev_per_ps": -0.26} and rec.finished_at == "t2"
    d = rec.to_dict()
    assert d["version"] == 2 and "target_temperature" not in d
    assert d["target_temperature_k"] == 920.0
    (tmp_path / "run.json").write_text(json.dumps({**old, "version": 3}))
    with pytest.raises(EgraffError, match="written by a newer egraff-lmp"):
        RunRecord.load(tmp_path)


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
    assert rec.result.target_temperature_k == 900.0 and rec.result.timestep_ps == 0.001


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
    assert (out.e_mae_mev, out.e_mae_mev_per_atom, out.f_mae_mev_per_a) == (12.0, 0.06, 150.0)
    assert (out.ev, out.fv) == (1e-8, 0.3)
