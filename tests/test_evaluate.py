"""egraff-lmp evaluate: real runs of tiny deployed models on the shipped CPMD reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from conftest import GETE_TEST

from egraff_lmp.cli import main
from egraff_lmp.evaluate.config import load as load_config
from egraff_lmp.evaluate.records import DatasetPlan, Evaluation, RunMetrics
from egraff_lmp.metrics import geometric_mean, jensen_shannon

TABLES = ["Table 1: static errors", "Table 2: structure", "Table 3: energy and force",
          "Table 4: stability and cost", "Beyond the study"]
REQUIRED = ["static.e_mae_mev", "static.f_mae_mev_per_a", "wf_percent", "jsd_nats", "ev",
            "ev_std", "fv", "fv_std", "stable_runs", "ms_per_step"]


def _config(path, models: dict, datasets=("gete",), **protocol):
    cfg = {"title": "tiny", "models": {k: {"artifact": str(v)} for k, v in models.items()},
           "datasets": list(datasets),
           "protocol": {"static_frames": 10, "runs": 2, "steps": 8, **protocol}}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _evaluate(capsys, *argv):
    code = main(["evaluate", *[str(a) for a in argv]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def evaluation(artifacts, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    cfg = _config(root / "eval.yaml", {"mace": artifacts["mace"],
                                       "allegro": artifacts["allegro"]}, nve_steps=10)
    out = root / "report"
    assert main(["evaluate", str(cfg), "-o", str(out), "--jobs", "2"]) == 0
    return cfg, out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.bold, self.italic = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self.bold += tag == "b"
        self.italic += tag == "i"


def test_evaluation_writes_every_table_plot_and_metric(evaluation):
    cfg, out = evaluation
    md = (out / "report.md").read_text()
    for title in TABLES:
        assert title in md
    # best of a row in bold, second in italics: the F MAE row, from the numbers themselves
    ev = Evaluation.load(out / "metrics.json")
    f_mae = {m: ev.cell(m, "gete").static.f_mae_mev_per_a for m in ("mace", "allegro")}
    header = next(x for x in md.splitlines() if x.startswith("| |"))
    order = [c.strip() for c in header.strip("|").split("|")][1:]
    row = next(x for x in md.splitlines() if x.startswith("| gete — F MAE"))
    cells = dict(zip(order, [c.strip() for c in row.strip("|").split("|")][1:]))
    best = min(f_mae, key=f_mae.get)
    worst = max(f_mae, key=f_mae.get)
    assert cells[best].startswith("**") and cells[worst].startswith("*")
    assert not cells[worst].startswith("**")
    assert "FV decorrelation" in md and "sits near 0.7" in md
    from egraff_lmp.evaluate.report import field_value

    reference = ev.reference["gete"]
    for model in ("mace", "allegro"):
        x = ev.cell(model, "gete")
        for name in REQUIRED:
            assert field_value(x, name) is not None, name
        assert x.runs == 2 and x.stable_runs == 2
        assert x.wf_percent > 0 and x.static.f_mae_mev_per_a > 0
        # FV: the mean over the runs of each run's geometric mean of its FV(t) (the runs'
        # own comparisons are cached in their directories), and so for the bond angles
        runs = [RunMetrics.load(p) for p in (out / "runs" / model).rglob("evaluation.json")]
        runs = [r for r in runs if r.fv_t]
        assert len(runs) == 2
        for r in runs:
            assert r.fv == pytest.approx(geometric_mean(r.fv_t), rel=1e-12)
            assert r.adf_jsd_nats == pytest.approx(jensen_shannon(
                r.adf_per_degree, reference.adf_per_degree), rel=1e-9)
        assert x.fv == pytest.approx(np.mean([r.fv for r in runs]), rel=1e-12)
        assert x.adf_jsd_nats == pytest.approx(np.mean([r.adf_jsd_nats for r in runs]),
                                               rel=1e-12)
        assert set(x.wf_pairs_percent) == {"Ge-Ge", "Ge-Te", "Te-Te"}
        assert len(x.curves.fv_t) == 9  # 8 steps, dump at the reference spacing
        assert x.nve.steps_done == 10 and x.nve.drift_mev_per_atom_per_ps is not None
        assert len(x.curves.adf_per_degree) == 90
    # the reference against itself: two disjoint 9-frame stretches (8 steps, dumped every
    # step), the same comparison as a run's, beside WF, JSD, EV and FV
    itself = reference.itself
    assert itself.frames == itself.simulation_frames == 9
    from egraff_lmp.compare import compare
    from egraff_lmp.evaluate.plan import reference_trajectory

    ref = reference_trajectory(next(t for t in load_config(cfg).datasets))
    c = compare(ref, ref, start=0, stop=9, ref_start=9, ref_stop=18,
                rmax=ev.protocol.rdf_rmax_a, dr=ev.protocol.rdf_dr_a)
    assert (itself.wf_percent, itself.fv) == (pytest.approx(c.wf_percent), pytest.approx(c.fv))
    assert "| reference vs itself |" in md and "two disjoint stretches of 9" in md
    from egraff_lmp.analysis.angles import BondAngles

    cut = reference.bond_cutoff_a
    adf = [BondAngles(ref, cut).run(a, a + 9).results.adf["total"] for a in (0, 9)]
    assert itself.adf_jsd_nats == pytest.approx(jensen_shannon(*adf))
    assert "| gete — bond angles JSD |" in md
    # the VDOS: each run against the reference over the same frames, and the floor
    from egraff_lmp.analysis import VDOS

    vd = [VDOS(ref, 1.19).run(a, a + 9).results.vdos["total"] for a in (0, 9)]
    assert itself.vdos_jsd_nats == pytest.approx(jensen_shannon(*vd))
    for r in runs:
        start = r.start_frame
        want = VDOS(ref, 1.19).run(start, start + 9).results.vdos["total"]
        assert r.vdos_jsd_nats == pytest.approx(jensen_shannon(r.vdos_per_thz, want),
                                                rel=1e-9)
    assert "| gete — VDOS JSD |" in md
    plan = ev.datasets["gete"].plan
    assert plan.timestep_fs == pytest.approx(1.19) and "reference's own" in plan.velocities
    assert plan.start_frames[0] >= 1
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("model,dataset,e_mae_mev") and len(rows) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["format"] == "egraff-lmp-evaluation" and metrics["version"] == 2
    for name in ("rdf_gete", "evfv_gete", "msd_vdos_adf_gete", "static_vs_dynamic"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert len(page.images) == 4 and all(s.startswith("data:image/png;base64,")
                                         for s in page.images)
    assert page.bold and page.italic and "table" in page.tags


def test_runs_start_from_the_reference_state_with_its_velocities(evaluation, artifacts):
    """Step 0 of each run is the reference frame it starts from, and the run is time-aligned
    with the reference from there: FV(0) is the model's own force violation on that frame."""
    from ase import Atoms

    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.io import read_trajectory
    from egraff_lmp.metrics import force_violation
    from egraff_lmp.trajectory import ConcatTrajectory

    _, out = evaluation
    artifacts_allegro = artifacts["allegro"]
    ref = ConcatTrajectory([read_trajectory(GETE_TEST),
                            read_trajectory(GETE_TEST.with_name("gete_val.npz"))])
    starts = DatasetPlan.load(out / "starts" / "gete" / "starts.json").start_frames
    for k, s in enumerate(starts):
        dump = read_trajectory(out / "runs" / "allegro" / "gete" / f"run-{k}" / "dump.lammpstrj")
        d = dump[0].positions - ref[s].positions
        frac = np.linalg.solve(ref[s].cell.T, d.T).T
        assert np.abs((frac - np.round(frac)) @ ref[s].cell).max() < 1e-5
        run = RunMetrics.load(out / "runs" / "allegro" / "gete" / f"run-{k}" /
                              "evaluation.json")
        atoms = Atoms(ref.symbols, positions=ref[s].positions, cell=ref[s].cell, pbc=True)
        atoms.calc = DeployedCalculator(artifacts_allegro)
        fv0 = float(force_violation(atoms.get_forces(), ref[s].forces))
        assert run.fv_t[0] == pytest.approx(fv0, rel=1e-4)


def test_a_killed_evaluation_resumes_without_redoing_finished_runs(evaluation, capsys):
    cfg, out = evaluation
    killed = out / "runs" / "mace" / "gete" / "run-1"
    rec = json.loads((killed / "run.json").read_text())
    rec["status"] = "running"  # what a killed run leaves behind
    (killed / "run.json").write_text(json.dumps(rec))
    (killed / "evaluation.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/gete/run-*/dump.lammpstrj")
            if killed not in p.parents}
    code, _, err = _evaluate(capsys, cfg, "-o", out)
    assert code == 0, err
    assert "5 already done" in err
    assert json.loads((killed / "run.json").read_text())["status"] == "ok"
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_results_writes_a_whole_docs_page_from_the_evaluation(evaluation, tmp_path, capsys):
    cfg, out = evaluation
    page = tmp_path / "docs" / "tiny.md"
    code, _, err = _evaluate(capsys, cfg, "-o", out, "--results", page)
    assert code == 0, err
    text = page.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("<!-- written by egraff-lmp evaluate --results")
    assert lines[1] == "# tiny"  # the config's title, then what was evaluated
    assert "2 model(s) × 1 dataset(s)" in text and "- **gete** (" in text
    assert f"--results {page}`" in text
    md = (out / "report.md").read_text()
    assert md[md.index("## Table 1"):md.index("## Stability")].strip() in text
    for title in TABLES:
        assert f"\n## {title}" in text
    assert "## Stability" not in text and "## Plots" not in text and "![" not in text
    # the page is one the strict docs build takes as it is
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nnav:\n  - tiny.md\n"
                                         "validation: {links: {not_found: warn, anchors: warn}}\n")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                            str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                           text=True)
    assert build.returncode == 0, build.stderr
    # a page it did not write is refused before anything runs, and left as it was
    hand = tmp_path / "notes.md"
    hand.write_text("# notes\n")
    code, _, err = _evaluate(capsys, cfg, "-o", out, "--results", hand)
    assert code == 2 and "not a results page" in err and hand.read_text() == "# notes\n"
    code, _, err = _evaluate(capsys, cfg, "-o", out, "--readme", "README.md")
    assert code == 2 and "--results docs/results/NAME.md" in err


def test_output_directory_of_another_evaluation_is_refused(evaluation, artifacts, tmp_path,
                                                           capsys):
    _, out = evaluation
    other = _config(tmp_path / "other.yaml", {"allegro": artifacts["allegro"]})
    code, _, err = _evaluate(capsys, other, "-o", out)
    assert code == 2 and "holds another evaluation" in err and len(err.splitlines()) == 1


def test_bad_configs_give_one_line_and_exit_2(artifacts, tmp_path, capsys):
    good = {"allegro": artifacts["allegro"]}
    cases = []
    cases.append((_config(tmp_path / "a.yaml", {"x": tmp_path / "missing.egraff.pt"}),
                  "artifact"))
    cases.append((_config(tmp_path / "b.yaml", good, datasets=["getee"]),
                  "did you mean 'gete'"))
    cases.append((_config(tmp_path / "c.yaml", good, datasets=["lips"]),
                  "datasets fetch lips"))
    cases.append((_config(tmp_path / "d.yaml", good, datasets=["acetylacetone"]),
                  "species mismatch"))
    p = _config(tmp_path / "e.yaml", good, stpes=10)
    cases.append((p, "did you mean 'steps'"))
    raw = yaml.safe_load(_config(tmp_path / "f.yaml", good).read_text())
    raw["model"] = raw.pop("models")
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(raw))
    cases.append((tmp_path / "f.yaml", "did you mean 'models'"))
    for cfg, what in cases:
        out = tmp_path / f"out-{cfg.stem}"
        code, _, err = _evaluate(capsys, cfg, "-o", out)
        assert code == 2 and what in err and len(err.splitlines()) == 1, (cfg, err)
        assert not out.exists(), "nothing is written for a config that does not check"


def test_dataset_without_energies_refuses_ev_and_runs_the_rest(artifacts, tmp_path, capsys):
    from ase import Atoms
    from ase.io import write

    from egraff_lmp.io import read_trajectory

    ref = read_trajectory(GETE_TEST)
    frames = []
    for fr in ref.frames(0, 20):
        a = Atoms(ref.symbols, positions=fr.positions, cell=fr.cell, pbc=True)
        a.arrays["forces"] = fr.forces
        frames.append(a)
    write(tmp_path / "noenergy.xyz", frames, format="extxyz")
    cfg = {"models": {"allegro": {"artifact": str(artifacts["allegro"])}},
           "datasets": [{"name": "gete-noenergy", "files": ["noenergy.xyz"],
                         "species": ["Ge", "Te"], "temperature": 920, "timestep_fs": 1.19,
                         "frame_spacing_fs": 1.19}],
           "protocol": {"runs": 1, "steps": 5, "static_frames": 5}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "cfg.yaml", "-o", tmp_path / "out")
    assert code == 0, err
    x = Evaluation.load(tmp_path / "out" / "metrics.json").cell("allegro", "gete-noenergy")
    assert x.ev is None and x.static.e_mae_mev is None
    assert x.fv is not None and x.wf_percent is not None and x.static.f_mae_mev_per_a is not None
    assert any("no energies" in n for n in x.notes)


def test_decorrelated_reference_starts_from_maxwell_boltzmann_and_aligns_nothing(
        artifacts, tmp_path, capsys):
    cfg = {"models": {"allegro": {"artifact": str(artifacts["allegro"])}},
           "datasets": [{"name": "gete-decorrelated", "files": [str(GETE_TEST)],
                         "species": ["Ge", "Te"], "temperature": 920, "timestep_fs": 1.0}],
           "protocol": {"runs": 1, "steps": 5, "static_frames": 5, "seed": 77}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "cfg.yaml", "-o", tmp_path / "out")
    assert code == 0, err
    m = Evaluation.load(tmp_path / "out" / "metrics.json")
    assert "Maxwell-Boltzmann at 920 K, seed 77" in m.datasets["gete-decorrelated"].plan.velocities
    assert "velocity        all create 920 ${seed}" in (
        tmp_path / "out" / "inputs" / "gete-decorrelated.in").read_text()
    x = m.cell("allegro", "gete-decorrelated")
    assert x.fv is None and x.wf_percent is not None


def test_dask_cluster_on_loopback_runs_the_simulations(artifacts, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    cfg = _config(tmp_path / "cfg.yaml", {"allegro": artifacts["allegro"]}, runs=2, steps=4,
                  static_frames=3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        code, _, err = _evaluate(capsys, cfg, "-o", tmp_path / "out", "--dask-scheduler",
                                 cluster.scheduler_address)
    assert code == 0, err
    x = Evaluation.load(tmp_path / "out" / "metrics.json").cell("allegro", "gete")
    assert x.stable_runs == 2


def test_slurm_array_script_runs_each_task_and_evaluate_collects(artifacts, tmp_path, capsys):
    cfg = _config(tmp_path / "cfg.yaml", {"allegro": artifacts["allegro"]}, runs=2, steps=4,
                  static_frames=3)
    out = tmp_path / "out"
    code, _, err = _evaluate(capsys, cfg, "-o", out, "--slurm")
    assert code == 0 and "sbatch" in err
    script = out / "slurm" / "array.sbatch"
    assert "#SBATCH --array=0-1" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)
    for task_id in ("0", "1"):  # what Slurm does for each array element
        subprocess.run(["bash", str(script)], check=True, capture_output=True,
                       env={**os.environ, "SLURM_ARRAY_TASK_ID": task_id})
    code, _, err = _evaluate(capsys, cfg, "-o", out)
    assert code == 0 and "2 already done" in err
    assert (out / "report.html").exists()


def test_molecules_run_in_a_shrink_wrapped_box_and_compare_as_molecules(tmp_path, capsys):
    """acetylacetone (shipped 300 K DFT set, C,H,O, not periodic, not a trajectory) at the
    OOD temperature of 600 K with a gentle LJ 'model' (a real TorchScript artifact)."""
    from lj_artifact import lj_artifact

    art = lj_artifact(tmp_path, epsilon=0.01, sigma=1.0, rc=4.0, elements=["C", "H", "O"])
    cfg = {"models": {"lj": {"artifact": str(art)}},
           "datasets": [{"name": "acetylacetone", "temperature": 600, "label": "acac-600K"}],
           "protocol": {"runs": 2, "steps": 20, "static_frames": 5}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "cfg.yaml", "-o", tmp_path / "out")
    assert code == 0, err
    m = Evaluation.load(tmp_path / "out" / "metrics.json")
    assert "boundary        s s s" in (tmp_path / "out" / "inputs" / "acac-600K.in").read_text()
    assert m.datasets["acac-600K"].temperature_k == 600
    assert "Maxwell-Boltzmann at 600 K" in m.datasets["acac-600K"].plan.velocities
    x = m.cell("lj", "acac-600K")
    assert x.stable_runs == 2 and x.wf_percent is not None and x.fv is None
    assert x.static.e_mae_mev is not None and x.static.f_mae_mev_per_a is not None
    assert set(x.wf_pairs_percent) == {"C-C", "C-H", "C-O", "H-H", "H-O", "O-O"}
    ref = m.reference["acac-600K"]  # analysed as a molecule
    assert ref.molecule and ref.rdf_normalisation == "pair-distance-density"
    assert ref.bond_rule == "covalent radii × 1.2" and set(ref.bond_cutoff_a) == {
        "C-C", "C-H", "C-O", "H-H", "H-O", "O-O"}
    # not a trajectory: no VDOS
    assert ref.vdos_per_thz is None and x.curves.vdos_per_thz is None
    run = RunMetrics.load(next((tmp_path / "out" / "runs").rglob("evaluation.json")))
    assert run.msd_internal and run.diffusivity_a2_per_ps == {}
    assert x.diffusivity_a2_per_ps == {}


def test_start_frames_share_one_comparison_window():
    from egraff_lmp.evaluate.plan import start_frames

    starts, window, note = start_frames(600, 5, 100, contiguous=True)
    assert window == 100 and starts[0] == 1 and starts[-1] + window <= 598 and not note
    starts, window, note = start_frames(600, 5, 1000, contiguous=True)  # reference too short
    assert window == 298 and starts == [1, 76, 150, 225, 300] and "shorter" in note
    assert all(s + window <= 598 for s in starts)
    starts, window, _ = start_frames(650, 3, 1000, contiguous=False)
    assert starts == [0, 324, 649] and window == 0


def test_an_evaluation_killed_mid_run_resumes_where_it_stopped(artifacts, tmp_path, capsys):
    """SIGKILL to the whole process group (evaluate and its running simulation), then the
    same command: the finished run is kept as it is, the killed one is redone."""
    import re
    import signal
    import sys
    import time

    cfg = _config(tmp_path / "cfg.yaml", {"allegro": artifacts["allegro"]}, runs=3, steps=30,
                  static_frames=3)
    out = tmp_path / "out"
    first = out / "runs" / "allegro" / "gete" / "run-0"
    proc = subprocess.Popen([sys.executable, "-m", "egraff_lmp", "evaluate", str(cfg), "-o",
                             str(out)], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads((first / "run.json").read_text())["status"] == "ok":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.md").exists()
    kept = (first / "dump.lammpstrj").stat().st_mtime_ns
    code, _, err = _evaluate(capsys, cfg, "-o", out)
    assert code == 0, err
    assert int(re.search(r"(\d+) already done", err).group(1)) >= 1
    assert (first / "dump.lammpstrj").stat().st_mtime_ns == kept
    x = Evaluation.load(out / "metrics.json").cell("allegro", "gete")
    assert x.runs == 3 and x.stable_runs == 3


def test_a_model_given_as_an_ase_calculator_runs_through_the_callback_engine(
        artifacts, tmp_path, capsys, monkeypatch):
    (tmp_path / "my_calc.py").write_text(
        "from egraff_lmp.calculator import DeployedCalculator\n\n\n"
        f"def make():\n    return DeployedCalculator({str(artifacts['allegro'])!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cfg = {"models": {"mine": {"calculator": "my_calc:make", "species": ["Ge", "Te"]}},
           "datasets": ["gete"], "protocol": {"runs": 1, "steps": 5, "static_frames": 3}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "cfg.yaml", "-o", tmp_path / "out")
    assert code == 0, err
    x = Evaluation.load(tmp_path / "out" / "metrics.json").cell("mine", "gete")
    assert x.engines == ["callback"] and x.stable_runs == 1 and x.static.f_mae_mev_per_a > 0


def test_a_model_column_with_one_artifact_per_dataset(artifacts, tmp_path, capsys):
    """artifacts: {dataset: file} runs each file on its dataset only; a dataset with no file
    in the column is left out of that column; a file for a dataset the config does not
    evaluate is an error."""
    from lj_artifact import lj_artifact

    art = lj_artifact(tmp_path, epsilon=0.01, sigma=1.0, rc=4.0, elements=["C", "H", "O"])
    cfg = {"models": {"per": {"artifacts": {"acetylacetone": str(art),
                                            "gete": {"artifact": str(artifacts["allegro"]),
                                                     "trained_on": "8 GeTe val frames"}},
                              "trained_on": "nothing (a Lennard-Jones model)"},
                      "lj": {"artifacts": {"acetylacetone": str(art)}}},
           "datasets": ["acetylacetone", "gete"],
           "protocol": {"runs": 1, "steps": 8, "static_frames": 3}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "cfg.yaml", "-o", tmp_path / "out")
    assert code == 0, err
    m = Evaluation.load(tmp_path / "out" / "metrics.json")
    assert set(m.results["per"]) == {"acetylacetone", "gete"}
    assert set(m.results["lj"]) == {"acetylacetone"}
    assert m.models["per"].artifacts["gete"] == str(artifacts["allegro"])
    runs = sorted(p.parent.relative_to(tmp_path / "out" / "runs").as_posix()
                  for p in (tmp_path / "out" / "runs").rglob("run.json"))
    assert runs == ["lj/acetylacetone/run-0", "per/acetylacetone/run-0", "per/gete/run-0"]
    # which frames each model saw in training, in the report
    assert m.models["per"].trained_on_per_dataset == {
        "acetylacetone": "nothing (a Lennard-Jones model)", "gete": "8 GeTe val frames"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert ("Model per was trained on acetylacetone: nothing (a Lennard-Jones model); gete: "
            "8 GeTe val frames.") in md
    # GeTe is judged against its test split only, which no shipped model saw
    assert m.datasets["gete"].trajectory_files == m.datasets["gete"].test_files

    cfg["models"]["lj"]["artifacts"]["3bpa"] = str(art)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = _evaluate(capsys, tmp_path / "bad.yaml", "-o", tmp_path / "out2")
    assert code == 2 and "names dataset '3bpa', which the config does not evaluate" in err
    assert len(err.strip().splitlines()) == 1
