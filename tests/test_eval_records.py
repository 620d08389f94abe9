"""The evaluation's records (units in their field names, versioned on disk), what an earlier
egraff-lmp wrote read through the legacy upgrade, the evaluation directory's paths, and the
report's sections rendered to Markdown and HTML from one description."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from egraff_lmp.errors import EgraffError
from egraff_lmp.evaluate.evaldir import EvalDir
from egraff_lmp.evaluate.records import (
    CellResult,
    Curves,
    DatasetEntry,
    DatasetPlan,
    Evaluation,
    ModelEntry,
    NveDrift,
    Protocol,
    ReferenceAnalysis,
    ReferenceFloor,
    RunMetrics,
    StaticErrors,
)
from egraff_lmp.evaluate.report import TABLES, report_sections, table
from egraff_lmp.evaluate.sections import Section, html_page, markdown


def _static():
    return StaticErrors(frames=10, n_atoms=200, e_mae_mev=780.4, e_mae_mev_per_atom=3.902,
                        f_mae_mev_per_a=301.19, ev=1.01e-10, fv=0.411, ev_referenced=0.42,
                        notes=["a note"])


def _plan(root: Path):
    return DatasetPlan(input=root / "inputs" / "gete.in", nve_input=root / "inputs" /
                       "gete-nve.in", start_frames=[1, 278],
                       data_files=[root / "starts" / "gete" / "start-0.data"],
                       species=["Ge", "Te"], velocities="the reference's own",
                       n_reference_frames=300, window_frames=20, notes=["n"],
                       timestep_fs=1.19, dump_every_steps=1, aligned=True)


def _run(k=0, **kw):
    return RunMetrics(model="allegro", dataset="gete", k=k, start_frame=1 + 277 * k,
                      velocities="v", status="ok", steps_done=20, ms_per_step=21.5,
                      engine="plugin", timestep_fs=1.19, wf_percent=0.7, jsd_nats=1e-3,
                      ev=5e-10, fv=0.33, t_decorrelation_fs=None, n_frames_compared=21, **kw)


def _cell(f_mae, wf, nve=None):
    return CellResult(static=StaticErrors(frames=10, f_mae_mev_per_a=f_mae, ev=1e-10,
                                          fv=0.4),
                      runs=2, steps=20, timestep_fs=1.19, temperature_k=920.0,
                      wf_percent=wf, wf_std_percent=0.5, jsd_nats=1e-3, jsd_std_nats=7e-4,
                      wf_pairs_percent={"Ge-Te": 2.0}, ev=5e-10, ev_std=4e-10, fv=0.33,
                      fv_std=0.07, stable_runs=2, ms_per_step=23.9, training_time_s=307.0,
                      diffusivity_a2_per_ps={"Ge": 0.08}, engines=["plugin"],
                      curves=Curves(r_a=[0.0, 0.05], rdf={"total": [0.0, 1.0]},
                                    fv_t=[0.1, 0.2], dt_frame_fs=1.19),
                      nve=nve, notes=["x"])


def _evaluation(root: Path) -> Evaluation:
    floor = ReferenceFloor(how="two stretches", frames=21, simulation_frames=21,
                           wf_percent=1.61, jsd_nats=2.2e-3, ev=3.9e-11, fv=0.386,
                           wf_pairs_percent={"Ge-Te": 4.0}, adf_jsd_nats=5e-3)
    ref = ReferenceAnalysis(label="gete", n_frames=300, n_atoms=200, r_a=[0.0, 0.05],
                            rdf={"total": [0.0, 1.0]}, rdf_normalisation="g(r)",
                            bond_cutoff_a=3.6, bond_rule="the first minimum",
                            angles_deg=[1.0, 3.0], adf_per_degree=[0.5, 0.5],
                            diffusivity_a2_per_ps={"Ge": 0.0867}, itself=floor)
    return Evaluation(
        title="two models", config="/c.yaml", protocol=Protocol(runs=2, steps=20),
        models={"allegro": ModelEntry(artifact="/a.pt", trained_on="val"),
                "nequip": ModelEntry(artifact="/n.pt", training_time_s=153.0)},
        datasets={"gete": DatasetEntry(name="gete", species=["Ge", "Te"], temperature_k=920.0,
                                       frame_spacing_fs=1.19, provenance="CPMD",
                                       plan=_plan(root))},
        results={"allegro": {"gete": _cell(301.2, 0.708, NveDrift(-0.3, 7e-4, 10, "ok"))},
                 "nequip": {"gete": _cell(279.8, 0.751)}},
        reference={"gete": ref}, runs=[_run(0), _run(1)], errors=[])


def _through_json(record):
    return type(record).from_dict(json.loads(json.dumps(record.to_dict())))


@pytest.mark.parametrize("make", [
    lambda root: Protocol(runs=3, steps=50, rdf_rmax_a=6.0, bond_cutoff_a=3.2, nve_steps=10),
    _plan, lambda root: _static(),
    lambda root: _run(0, ev_t=[1e-9, 2e-9], fv_t=[0.1, 0.3], r_a=[0.0, 0.05],
                      rdf={"total": [0.0, 1.0], "Ge-Te": [0.0, 2.0]},
                      wf_pairs_percent={"Ge-Te": 2.0}, diffusivity_a2_per_ps={"Ge": 0.08},
                      notes=["n"], vdos_jsd_nats=5e-3, vdos_jsd_frames=21),
    lambda root: _cell(301.2, 0.7, NveDrift(-0.3, 7e-4, 10, "ok")),
    lambda root: _evaluation(root).reference["gete"],
    lambda root: _evaluation(root).datasets["gete"],
    lambda root: ModelEntry(artifacts={"gete": "/a.pt"}, trained_on_per_dataset={"gete": "v"}),
    _evaluation,
], ids=["Protocol", "DatasetPlan", "StaticErrors", "RunMetrics", "CellResult",
        "ReferenceAnalysis", "DatasetEntry", "ModelEntry", "Evaluation"])
def test_every_record_round_trips_through_its_versioned_json(make, tmp_path):
    record = make(tmp_path)
    d = record.to_dict()
    assert d["format"] == type(record).FORMAT and d["version"] == 2
    assert _through_json(record) == record
    path = record.save(tmp_path / "r.json")
    assert type(record).load(path) == record


def test_metrics_json_keeps_the_runs_scalars_and_leaves_their_series_in_the_run_caches():
    ev = Evaluation(runs=[_run(0, fv_t=[0.1, 0.2], rdf={"total": [1.0]})])
    row = ev.to_dict()["runs"][0]
    assert row["fv"] == 0.33 and "fv_t" not in row and "rdf" not in row
    assert Evaluation.from_dict(ev.to_dict()).runs[0].fv_t is None


def test_a_record_of_another_format_or_a_newer_version_is_refused():
    d = _static().to_dict()
    with pytest.raises(EgraffError, match="is a egraff-lmp-static-errors record, not a"):
        RunMetrics.from_dict(d)
    with pytest.raises(EgraffError, match="written by a newer egraff-lmp"):
        StaticErrors.from_dict({**d, "version": 3})
    with pytest.raises(EgraffError, match="not a readable"):
        StaticErrors.load(Path("/nonexistent/static.json"))


def test_version_1_caches_without_a_header_are_read_under_the_fields_with_units():
    run = RunMetrics.from_dict({"model": "m", "dataset": "gete", "k": 1, "start_frame": 5,
                                "status": "ok", "wf": 0.7, "wf_sqrt": 0.9, "jsd": 1e-3,
                                "wf_pairs": {"Ge-Te": 2.0}, "r": [0.0, 0.05],
                                "msd_t": [0.0, 1.19], "msd": [0.0, 0.1],
                                "diffusivity": {"Ge": 0.08}, "vdos_freq": [0.0, 1.0],
                                "vdos": [0.5, 0.5], "vdos_jsd": 5e-3, "adf": [1.0],
                                "adf_jsd": 4e-3, "fv_t": [0.1]})
    assert (run.wf_percent, run.wf_sqrt_percent, run.jsd_nats) == (0.7, 0.9, 1e-3)
    assert run.wf_pairs_percent == {"Ge-Te": 2.0} and run.r_a == [0.0, 0.05]
    assert (run.msd_t_fs, run.msd_a2, run.diffusivity_a2_per_ps) == (
        [0.0, 1.19], [0.0, 0.1], {"Ge": 0.08})
    assert (run.vdos_freq_thz, run.vdos_per_thz, run.vdos_jsd_nats) == (
        [0.0, 1.0], [0.5, 0.5], 5e-3)
    assert (run.adf_per_degree, run.adf_jsd_nats, run.fv_t) == ([1.0], 4e-3, [0.1])
    plan = DatasetPlan.from_dict({"input": "/o/inputs/gete.in", "starts": [1, 278],
                                  "window": 20, "dump_every": 1, "timestep_fs": 1.19,
                                  "aligned": True, "velocities": "v"})
    assert plan.input == Path("/o/inputs/gete.in") and plan.start_frames == [1, 278]
    assert (plan.window_frames, plan.dump_every_steps, plan.dt_frame_fs) == (20, 1, 1.19)
    ref = ReferenceAnalysis.from_dict({"label": "gete", "bond_cutoff": 3.6, "angles": [1.0],
                                       "adf": [1.0], "r": [0.0], "rdf": {"total": [1.0]},
                                       "itself": {"how": "h", "frames": 9, "wf": 1.6,
                                                  "jsd": 2e-3, "adf_jsd": 5e-3,
                                                  "diffusivity": {"Ge": 0.09}}})
    assert (ref.bond_cutoff_a, ref.angles_deg, ref.adf_per_degree) == (3.6, [1.0], [1.0])
    assert ref.itself == ReferenceFloor(how="h", frames=9, wf_percent=1.6, jsd_nats=2e-3,
                                        adf_jsd_nats=5e-3, diffusivity_a2_per_ps={"Ge": 0.09})
    # static errors: the oldest cache named neither the unit nor that they are static
    old = StaticErrors.from_dict({"frames": 3, "e_mae": 12.0, "e_mae_per_atom": 0.06,
                                  "f_mae": 150.0, "ev_static": 1e-8, "fv_static": 0.3,
                                  "ev_referenced_static": 0.4})
    assert old == StaticErrors(frames=3, e_mae_mev=12.0, e_mae_mev_per_atom=0.06,
                               f_mae_mev_per_a=150.0, ev=1e-8, fv=0.3, ev_referenced=0.4)


def test_version_1_metrics_json_is_upgraded_to_the_nested_records():
    """metrics.json version 1: a model × dataset flat (static errors and NVE drift beside the
    means), the dataset's plan beside its registry settings, the protocol's keys unitless."""
    v1 = {"format": "egraff-lmp-evaluation", "version": 1, "title": "t", "config": "/c.yaml",
          "protocol": {"runs": 2, "steps": 20, "rdf_dr": 0.05, "rdf_rmax": None,
                       "max_force": 50.0, "bond_cutoff": 3.2, "nve_steps": 10},
          "models": {"m": {"artifact": "/a.pt", "artifacts": {}, "trained_on": "val",
                           "trained_on_per_dataset": {}, "calculator": None,
                           "family": "mace", "training_time_s": 307}},
          "datasets": {"gete": {"name": "gete", "species": ["Ge", "Te"], "temperature": 920,
                                "timestep_fs": 1.19, "frame_spacing_fs": 1.19,
                                "dump_every": 1, "start_frames": [1, 278],
                                "velocities": "v", "role": "", "provenance": "p",
                                "estimated": [], "sources": {}, "test_files": ["/t.npz"],
                                "trajectory_files": ["/t.npz"]}},
          "results": {"m": {"gete": {
              "frames": 10, "n_atoms": 200, "e_mae_mev": 780.4, "e_mae_mev_per_atom": 3.9,
              "f_mae_mev_per_a": 301.2, "ev_static": 1e-10, "fv_static": 0.41,
              "ev_referenced_static": 0.42, "notes": ["merged"], "runs": 2, "steps": 20,
              "timestep_fs": 1.19, "temperature": 920, "wf": 0.708, "wf_std": 0.559,
              "jsd": 1e-3, "jsd_std": 7e-4, "wf_pairs": {"Ge-Te": 1.98},
              "jsd_pairs": {"Ge-Te": 1e-3}, "ev": 5e-10, "ev_std": 4.7e-10, "fv": 0.338,
              "fv_std": 0.069, "adf_jsd": 3.9e-3, "vdos_jsd": 5e-3, "stable_runs": 2,
              "time_to_failure_ps": None, "ms_per_step": 23.9, "training_time_s": 307,
              "diffusivity": {"Ge": 0.0838}, "engine": ["plugin"], "vdos_extent_thz": 9.0,
              "inference_s_per_1000_steps": 23.9,
              "curves": {"r": [0.0], "rdf": {"total": [1.0]}, "ev_t": [1e-9], "fv_t": [0.3],
                         "dt_frame_fs": 1.19, "msd_t": [0.0], "msd": [0.0],
                         "vdos_freq": [0.0], "vdos": [1.0], "adf": [1.0]},
              "nve_drift_mev_per_atom_per_ps": -0.301, "nve_abs_drift": 0.301,
              "nve_max_abs_dev_ev": 7.2e-4, "nve_steps_done": 10, "nve_status": "ok"}}},
          "reference": {"gete": {"label": "gete", "n_frames": 300, "bond_cutoff": 3.2,
                                 "itself": {"how": "h", "frames": 21, "wf": 1.61}}},
          "runs": [{"model": "m", "dataset": "gete", "k": 0, "start_frame": 1, "wf": 1.27,
                    "status": "ok"}],
          "errors": []}
    ev = Evaluation.from_dict(json.loads(json.dumps(v1)))
    assert ev.protocol == Protocol(runs=2, steps=20, rdf_dr_a=0.05, max_force_ev_per_a=50.0,
                                   bond_cutoff_a=3.2, nve_steps=10)
    d = ev.datasets["gete"]
    assert d.temperature_k == 920 and d.plan.start_frames == [1, 278]
    assert (d.plan.timestep_fs, d.plan.dump_every_steps, d.plan.velocities) == (1.19, 1, "v")
    x = ev.cell("m", "gete")
    assert x.static == StaticErrors(frames=10, n_atoms=200, e_mae_mev=780.4,
                                    e_mae_mev_per_atom=3.9, f_mae_mev_per_a=301.2, ev=1e-10,
                                    fv=0.41, ev_referenced=0.42)
    assert x.nve == NveDrift(drift_mev_per_atom_per_ps=-0.301, max_abs_dev_ev=7.2e-4,
                             steps_done=10, status="ok")
    assert x.nve.abs_drift_mev_per_atom_per_ps == 0.301
    assert x.inference_s_per_1000_steps == 23.9 and x.notes == ["merged"]
    assert (x.wf_percent, x.wf_std_percent, x.jsd_nats, x.jsd_std_nats) == (
        0.708, 0.559, 1e-3, 7e-4)
    assert (x.temperature_k, x.engines, x.diffusivity_a2_per_ps) == (920, ["plugin"],
                                                                     {"Ge": 0.0838})
    assert (x.adf_jsd_nats, x.vdos_jsd_nats, x.wf_pairs_percent) == (3.9e-3, 5e-3,
                                                                     {"Ge-Te": 1.98})
    assert x.curves == Curves(r_a=[0.0], rdf={"total": [1.0]}, ev_t=[1e-9], fv_t=[0.3],
                              dt_frame_fs=1.19, msd_t_fs=[0.0], msd_a2=[0.0],
                              vdos_freq_thz=[0.0], vdos_per_thz=[1.0], adf_per_degree=[1.0])
    assert ev.reference["gete"].bond_cutoff_a == 3.2
    assert ev.reference["gete"].itself.wf_percent == 1.61
    assert ev.runs[0].wf_percent == 1.27
    # written again, it is version 2 and reads back as itself
    assert ev.to_dict()["version"] == 2 and _through_json(ev) == ev


def test_protocol_takes_the_config_keys_and_hashes_under_them():
    p = Protocol.from_config({"runs": 3, "rdf_dr": 0.1, "max_force": 20.0}, "c.yaml")
    assert (p.runs, p.rdf_dr_a, p.max_force_ev_per_a, p.steps) == (3, 0.1, 20.0, 1000)
    config = p.config_dict()  # what the directory's fingerprint hashes, as before the types
    assert config["rdf_dr"] == 0.1 and config["max_force"] == 20.0 and "rdf_dr_a" not in config
    assert set(config) == {"runs", "steps", "engine", "np", "seed", "tdamp_steps",
                           "static_frames", "rdf_dr", "rdf_rmax", "max_force", "temp_factor",
                           "decorrelation_fv", "bond_cutoff", "nve_steps"}
    with pytest.raises(EgraffError, match="did you mean 'steps'"):
        Protocol.from_config({"stpes": 10}, "c.yaml")
    with pytest.raises(EgraffError, match="protocol.runs must be a positive integer"):
        Protocol.from_config({"runs": 0}, "c.yaml")


def test_evaldir_spells_every_path_of_an_evaluation_directory(tmp_path):
    d = EvalDir(tmp_path / "out")
    r = d.root
    assert r == (tmp_path / "out").resolve()
    assert d.mark == r / "evaluation.json"
    assert d.input("gete") == r / "inputs" / "gete.in"
    assert d.input("gete", nve=True) == r / "inputs" / "gete-nve.in"
    assert d.plan("gete") == r / "starts" / "gete" / "starts.json"
    assert d.start_data("gete", 1) == r / "starts" / "gete" / "start-1.data"
    assert d.reference("gete") == r / "reference" / "gete.json"
    assert d.spec("mace", "gete", "run-0") == r / "specs" / "mace" / "gete" / "run-0.json"
    assert d.rundir("mace", "gete", "run-nve") == r / "runs" / "mace" / "gete" / "run-nve"
    assert EvalDir.run_metrics(d.rundir("mace", "gete", "run-0")) == (
        r / "runs" / "mace" / "gete" / "run-0" / "evaluation.json")
    assert d.static("mace", "gete") == r / "static" / "mace" / "gete.json"
    assert d.static_predictions("mace", "gete") == r / "static" / "mace" / "gete.npz"
    assert (d.slurm_tasks, d.slurm_script) == (r / "slurm" / "tasks.txt",
                                               r / "slurm" / "array.sbatch")
    assert d.slurm_logs == f"{r}/slurm/%A_%a.out"
    assert (d.report_md, d.report_html) == (r / "report.md", r / "report.html")
    assert (d.metrics_json, d.metrics_csv) == (r / "metrics.json", r / "metrics.csv")
    assert d.plot("rdf_gete") == r / "plots" / "rdf_gete.png"


def test_evaldir_claims_an_empty_directory_and_refuses_another_evaluation(tmp_path):
    d = EvalDir(tmp_path / "out")
    d.claim("abc", "/c.yaml", "t", Protocol().config_dict())
    assert json.loads(d.mark.read_text())["fingerprint"] == "abc"
    d.claim("abc", "/c.yaml", "t", {})  # the same evaluation: resumed
    with pytest.raises(EgraffError, match="holds another evaluation"):
        d.claim("def", "/c.yaml", "t", {})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(EgraffError, match="is not an evaluation directory"):
        EvalDir(tmp_path / "busy").claim("abc", "/c.yaml", "t", {})


class _Cells(HTMLParser):
    """The table cells of an HTML page: (text, bold, italic)."""

    def __init__(self):
        super().__init__()
        self.cells, self._in, self._b, self._i = [], False, False, False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._in, self._b, self._i = True, False, False
            self.cells.append(["", False, False])
        self._b |= tag == "b"
        self._i |= tag == "i"

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells[-1][1:] = [self._b, self._i]
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1][0] += data


def _md_cells(text):
    out = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| |"):
            for c in [c.strip() for c in line.strip("|").split("|")][1:]:
                bold, italic = c.startswith("**"), c.startswith("*") and not c.startswith("**")
                out.append([c.strip("*"), bold, italic])
    return out


def test_a_section_renders_the_same_numbers_to_markdown_and_html(tmp_path):
    ev = _evaluation(tmp_path)
    title, rows = TABLES[1]  # Table 2: WF and JSD ± std, and the reference against itself
    sections = [Section(title, [table(ev, rows)])]
    md, page = markdown(sections), html_page(sections, "t")
    assert md.startswith(f"## {title}\n\n| | allegro | nequip | reference vs itself |")
    assert "| gete — WF (%) | **0.708 ± 0.5** | *0.751 ± 0.5* | 1.61 |" in md
    parsed = _Cells()
    parsed.feed(page)
    assert parsed.cells == _md_cells(md) and len(parsed.cells) == 6
    assert f"<h2>{title}</h2>" in page


def test_the_whole_report_is_one_list_of_sections_for_both_renderings(tmp_path):
    ev = _evaluation(tmp_path)
    sections = report_sections(ev, {}, tmp_path)
    titles = [s.title for s in sections]
    assert titles[0] == "two models" and sections[0].level == 1
    assert [t for t in titles if t.startswith("Table")] == [t for t, _ in TABLES[:4]]
    assert titles[-2:] == ["Stability", "Plots"]
    md, page = markdown(sections), html_page(sections, ev.title)
    assert "- **gete** (gete): 920 K, timestep 1.19 fs" in md
    assert "<p>gete (gete): 920 K, timestep 1.19 fs" in page
    # the NVE drift of the one model with an NVE run, the F MAE ranked lower-is-better
    assert "| gete — NVE drift, absolute (meV/atom/ps) | 0.3 | – | – |" in md
    assert "| gete — F MAE (meV/Å) | *301.2* | **279.8** |" in md
    numbers = re.compile(r"\d+\.\d+(?:e-?\d+)?")
    for s in sections[1:-2]:
        one = markdown([s])
        assert sorted(numbers.findall(one)) == sorted(numbers.findall(html_page([s], "t")))


def test_a_report_is_written_again_from_metrics_json_alone(tmp_path):
    """report.regenerate: metrics.json (here version 2; version 1 reads through the legacy
    upgrade) → plots, report.md, report.html and metrics.csv, nothing recomputed."""
    from egraff_lmp.evaluate.report import regenerate

    ev = _evaluation(tmp_path)
    ev.save(EvalDir(tmp_path).metrics_json)
    back = regenerate(tmp_path)
    assert back == ev
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# two models\n") and "![rdf_gete](plots/rdf_gete.png)" in md
    assert "| gete — WF (%) | **0.708 ± 0.5** | *0.751 ± 0.5* | 1.61 |" in md
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") == 4
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("model,dataset,e_mae_mev,") and rows[1].startswith(
        "allegro,gete,,,301.2,0.708,")
