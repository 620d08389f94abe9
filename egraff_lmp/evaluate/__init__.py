"""``egraff-lmp evaluate CONFIG.yaml -o REPORTDIR``: the EGraFFBench protocol in one command.

For each model × dataset: static errors on the test frames (Table 1); K NVT simulations of
N steps from reference frames (``plan``), run by an existing executor (``executors``);
WF/JSD of the RDFs (Table 2), EV/FV geometric means ± std over the runs (Table 3),
stability and timing (Table 4), and beyond the study: FV decorrelation time, static EV/FV,
partial RDFs, MSD/diffusivity, VDOS (``collect``). ``report`` writes report.md/html,
metrics.json, metrics.csv and the plots.

REPORTDIR layout: ``evaluation.json`` (which config, fingerprint), ``inputs/``, ``starts/``,
``runs/MODEL/DATASET/run-k/`` (each a complete ``egraff-lmp run`` directory), ``static/``,
``reference/``, ``slurm/`` (with ``--slurm``), and the report files. Running the same
command again resumes: finished runs (status ok or failed) are kept, the rest redone.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path

from ..errors import EgraffError, located
from ..files import write_json
from ..run.record import RunRecord
from . import collect, config, executors, plan

__all__ = ["evaluate"]


def _fingerprint(cfg: config.Config) -> str:
    h = hashlib.sha256(json.dumps({"config": cfg.raw, "protocol": cfg.protocol},
                                  sort_keys=True, default=str).encode())
    for m in cfg.models:
        for a in m.artifacts():
            h.update(hashlib.sha256(a.read_bytes()).digest())
    return h.hexdigest()[:16]


def _claim(outdir: Path, cfg: config.Config) -> None:
    """Refuse an output directory that holds another evaluation (or anything else)."""
    mark = outdir / "evaluation.json"
    fp = _fingerprint(cfg)
    if mark.exists():
        try:
            old = json.loads(mark.read_text())
        except json.JSONDecodeError:
            raise located(mark, "is not an evaluation record") from None
        if old.get("fingerprint") != fp:
            raise located(outdir, f"holds another evaluation (of {old.get('config')}, "
                                  f"fingerprint {old.get('fingerprint')}; this one is {fp}): "
                                  "give another -o")
        return
    if outdir.exists() and any(outdir.iterdir()):
        raise located(outdir, "exists and is not an evaluation directory: give another -o")
    write_json(mark, {"config": str(cfg.path), "fingerprint": fp, "title": cfg.title,
                      "protocol": cfg.protocol})


def _record(rundir: Path) -> RunRecord | None:
    try:
        return RunRecord.load(rundir)
    except EgraffError:
        return None


def _finished(rundir: Path) -> bool:
    rec = _record(rundir)
    return rec is not None and rec.finished


def evaluate(config_path, outdir, runs=None, steps=None, jobs=1, dask_scheduler=None,
             slurm=False, log=print) -> dict:
    """Run (or resume) the evaluation; returns the metrics dict written to metrics.json."""
    cfg = config.load(config_path, {"runs": runs, "steps": steps})
    outdir = Path(outdir).resolve()
    _claim(outdir, cfg)
    infos, tasks = {}, []
    for t in cfg.datasets:
        infos[t.label] = plan.prepare_dataset(t, cfg, outdir)
        for m in cfg.models:
            if m.for_task(t) is not None:
                tasks += plan.run_tasks(m.for_task(t), t, infos[t.label], cfg, outdir)
    todo = [r for r in tasks if not _finished(r.rundir)]
    nve = (f", + 1 NVE run of {cfg.protocol['nve_steps']} steps each"
           if cfg.protocol["nve_steps"] else "")
    log(f"{len(tasks)} simulations ({len(cfg.models)} models, {len(cfg.datasets)} datasets, "
        f"{cfg.protocol['runs']} runs of {cfg.protocol['steps']} steps{nve}); "
        f"{len(tasks) - len(todo)} already done")
    if slurm:
        again = shlex.join(["egraff-lmp", "evaluate", str(cfg.path), "-o", str(outdir),
                            "--runs", str(cfg.protocol["runs"]),
                            "--steps", str(cfg.protocol["steps"])])
        script = executors.write_slurm(outdir, [r.spec_path for r in todo],
                                       cfg.protocol["np"], again)
        log(f"wrote {script} ({len(todo)} array tasks): sbatch it, then run: {again}")
        return {"slurm_script": str(script), "tasks": len(todo)}
    for r in todo:
        if r.rundir.exists():
            shutil.rmtree(r.rundir)  # an unfinished run is redone from its start

    def done(i, res):
        r = todo[i]
        rec = _record(r.rundir)
        if res[0] == 0 and rec is not None:
            what = f"ok, {rec.ms_per_step or 0:.1f} ms/step"
        elif rec is not None and rec.status == "failed":
            what = f"stopped at step {rec.failed_at_step} ({rec.failure})"
        else:
            what = res[1] or f"exit {res[0]}"
        log(f"  {r.model} / {r.dataset} {r.rundir.name}: {what}")

    executors.run_all([r.spec_path for r in todo], jobs, dask_scheduler, done)
    return _collect(cfg, outdir, infos, tasks, log)


def _collect(cfg, outdir, infos, tasks, log) -> dict:
    from .report import write_report

    errors, results, run_rows = [], {}, []
    refs = {t.label: plan.reference_trajectory(t) for t in cfg.datasets}
    references = {t.label: collect.reference_analysis(t, infos[t.label], cfg, outdir)
                  for t in cfg.datasets}
    for column in cfg.models:
        results[column.name] = {}
        for t in cfg.datasets:
            m = column.for_task(t)
            if m is None:
                continue
            static = collect.static_errors(m, t, cfg, outdir)
            runs, nve = [], None
            for r in (r for r in tasks if r.model == m.name and r.dataset == t.label):
                if not _finished(r.rundir):
                    rec_err = _run_error(r.rundir)
                    errors.append(f"{m.name}/{t.label} {r.rundir.name}: {rec_err}")
                elif r.kind == "nve":
                    nve = collect.nve_drift(r)
                else:
                    ref_adf = {"cutoff": references[t.label]["bond_cutoff"],
                               "adf": references[t.label]["adf"]}
                    runs.append(collect.run_metrics(r, t, infos[t.label], cfg, refs[t.label],
                                                    ref_adf))
            run_rows += [{k: v for k, v in x.items() if not isinstance(v, (list, dict))}
                         for x in runs]
            if runs:
                results[m.name][t.label] = collect.aggregate(m, t, static, runs,
                                                             infos[t.label], cfg)
                results[m.name][t.label].update(nve or {})
    metrics = {
        "format": "egraff-lmp-evaluation", "version": 1,
        "title": cfg.title, "config": str(cfg.path), "protocol": cfg.protocol,
        "models": {m.name: {"artifact": str(m.artifact) if m.artifact else None,
                            "artifacts": {k: str(x.artifact) for k, x in m.per_dataset.items()},
                            "trained_on": m.trained_on,
                            "trained_on_per_dataset": {k: x.trained_on for k, x in
                                                       m.per_dataset.items() if x.trained_on},
                            "calculator": m.calculator, "family": m.metadata.get("family"),
                            "training_time_s": m.training_time_s} for m in cfg.models},
        "datasets": {t.label: {"name": t.dataset.name, "species": list(t.dataset.species),
                               "temperature": t.dataset.temperature,
                               "timestep_fs": infos[t.label]["timestep_fs"],
                               "frame_spacing_fs": t.dataset.frame_spacing_fs,
                               "dump_every": infos[t.label]["dump_every"],
                               "start_frames": infos[t.label]["starts"],
                               "velocities": infos[t.label]["velocities"],
                               "role": t.dataset.role, "provenance": t.dataset.provenance,
                               "estimated": list(t.dataset.estimated),
                               "sources": dict(t.dataset.sources),
                               "test_files": [str(p) for p in t.test_files],
                               "trajectory_files": [str(p) for p in t.trajectory_files]}
                     for t in cfg.datasets},
        "results": results, "reference": references, "runs": run_rows, "errors": errors,
    }
    write_report(metrics, outdir)
    log(f"wrote {outdir / 'report.md'}, report.html, metrics.json and metrics.csv")
    if errors:
        raise EgraffError(f"{len(errors)} simulation(s) ended in an error (first: {errors[0]}); "
                          f"the report of the rest is in {outdir}; run the same command again "
                          "to retry them")
    return metrics


def _run_error(rundir: Path) -> str:
    rec = _record(rundir)
    if rec is None:
        return "did not start (no run.json)"
    return rec.error or f"status {rec.status}"


def main_log(msg: str) -> None:
    print(msg, file=sys.stderr)
