"""``egraff-lmp evaluate CONFIG.yaml -o REPORTDIR``: the EGraFFBench protocol in one command.

For each model × dataset: static errors on the test frames (Table 1); K NVT simulations of
N steps from reference frames (``plan``), run by an existing executor (``executors``);
WF/JSD of the RDFs (Table 2), EV/FV geometric means ± std over the runs (Table 3),
stability and timing (Table 4), and beyond the study: FV decorrelation time, static EV/FV,
partial RDFs, MSD/diffusivity, VDOS (``collect``). ``report`` writes report.md/html,
metrics.json, metrics.csv and the plots.

The stages hand each other the records of ``records`` (``Protocol``, ``DatasetPlan``,
``RunMetrics``, ``CellResult``, ``Evaluation``: units in their field names, versioned on
disk; what an earlier egraff-lmp wrote is read through ``legacy``). Every path of REPORTDIR
is spelled by ``evaldir.EvalDir``. Running the same command again resumes: finished runs
(status ok or failed) are kept, the rest redone.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path

from ..errors import EgraffError
from ..run.record import RunRecord
from . import collect, config, executors, plan
from .deviation import committee_warning
from .evaldir import EvalDir
from .records import DatasetEntry, Evaluation, ModelEntry

__all__ = ["Evaluation", "evaluate"]


def _fingerprint(cfg: config.Config) -> str:
    # the protocol under its config keys, as every version hashed it (old directories resume)
    h = hashlib.sha256(json.dumps({"config": cfg.raw, "protocol": cfg.protocol.config_dict()},
                                  sort_keys=True, default=str).encode())
    for m in cfg.models:
        for a in [*m.artifacts(), *m.committee]:
            h.update(hashlib.sha256(a.read_bytes()).digest())
    return h.hexdigest()[:16]


def _compiled(cfg: config.Config, log) -> config.Config:
    """``cfg`` with every artifact replaced by its compiled package, from the cache
    (compiled once per artifact, whatever the number of runs and jobs)."""
    import dataclasses
    import time

    from ..deploy.compiled import cached

    def package(m: config.Model) -> config.Model:
        if m.artifact is None:
            return dataclasses.replace(m, per_dataset={k: package(v) for k, v in
                                                       m.per_dataset.items()})
        t0 = time.perf_counter()
        path = cached(m.artifact, head=m.head)
        log(f"model {m.name}: {m.artifact.name} runs compiled as {path} "
            f"({time.perf_counter() - t0:.0f} s to compile or find)")
        return dataclasses.replace(m, artifact=path, per_dataset={
            k: package(v) for k, v in m.per_dataset.items()})

    return dataclasses.replace(cfg, models=[package(m) for m in cfg.models])


def _record(rundir: Path) -> RunRecord | None:
    try:
        return RunRecord.load(rundir)
    except EgraffError:
        return None


def _finished(rundir: Path) -> bool:
    rec = _record(rundir)
    return rec is not None and rec.finished


def evaluate(config_path, outdir, runs=None, steps=None, jobs=1, dask_scheduler=None,
             slurm=False, log=print) -> Evaluation | executors.SlurmArray:
    """Run (or resume) the evaluation; returns the :class:`Evaluation` written to
    metrics.json (with ``slurm``: the job array written instead)."""
    cfg = config.load(config_path, {"runs": runs, "steps": steps})
    proto = cfg.protocol
    evaldir = EvalDir(outdir)
    evaldir.claim(_fingerprint(cfg), str(cfg.path), cfg.title, proto.config_dict())
    if proto.compiled:
        cfg = _compiled(cfg, log)
    plans, tasks = {}, []
    for t in cfg.datasets:
        plans[t.label] = plan.prepare_dataset(t, proto, evaldir)
        for m in cfg.models:
            if m.for_task(t) is not None:
                tasks += plan.run_tasks(m.for_task(t), t, plans[t.label], proto, evaldir)
    todo = [r for r in tasks if not _finished(r.rundir)]
    nve = f", + 1 NVE run of {proto.nve_steps} steps each" if proto.nve_steps else ""
    log(f"{len(tasks)} simulations ({len(cfg.models)} models, {len(cfg.datasets)} datasets, "
        f"{proto.runs} runs of {proto.steps} steps{nve}); "
        f"{len(tasks) - len(todo)} already done")
    if slurm:
        again = shlex.join(["egraff-lmp", "evaluate", str(cfg.path), "-o", str(evaldir.root),
                            "--runs", str(proto.runs), "--steps", str(proto.steps)])
        array = executors.write_slurm(evaldir, [r.spec_path for r in todo], proto.np, again)
        log(f"wrote {array.script} ({array.tasks} array tasks): sbatch it, then run: {again}")
        return array
    for r in todo:
        if r.rundir.exists():
            shutil.rmtree(r.rundir)  # an unfinished run is redone from its start

    def done(i, res):
        r = todo[i]
        rec = _record(r.rundir)
        if res[0] == 0 and rec is not None:
            what = f"ok, {rec.result.ms_per_step or 0:.1f} ms/step"
        elif rec is not None and rec.status == "failed":
            what = f"stopped at step {rec.result.failed_at_step} ({rec.result.failure})"
        else:
            what = res[1] or f"exit {res[0]}"
        log(f"  {r.model} / {r.dataset} {r.rundir.name}: {what}")

    executors.run_all([r.spec_path for r in todo], jobs, dask_scheduler, done)
    return _collect(cfg, evaldir, plans, tasks, log)


def _model_entry(m: config.Model) -> ModelEntry:
    return ModelEntry(artifact=str(m.artifact) if m.artifact else None,
                      artifacts={k: str(x.artifact) for k, x in m.per_dataset.items()},
                      trained_on=m.trained_on,
                      trained_on_per_dataset={k: x.trained_on for k, x in m.per_dataset.items()
                                              if x.trained_on},
                      calculator=m.calculator, family=m.metadata.get("family"),
                      training_time_s=m.training_time_s,
                      committee=[str(a) for a in m.committee], head=m.head,
                      head_per_dataset={k: x.head for k, x in m.per_dataset.items()
                                        if x.head})


def _dataset_entry(t: config.DatasetTask, p) -> DatasetEntry:
    ds = t.dataset
    return DatasetEntry(name=ds.name, species=list(ds.species), temperature_k=ds.temperature,
                        frame_spacing_fs=ds.frame_spacing_fs, role=ds.role,
                        provenance=ds.provenance, estimated=list(ds.estimated),
                        sources=dict(ds.sources), test_files=[str(f) for f in t.test_files],
                        trajectory_files=[str(f) for f in t.trajectory_files], plan=p)


def _collect(cfg: config.Config, evaldir: EvalDir, plans: dict, tasks: list, log
             ) -> Evaluation:
    from .report import write_report

    proto = cfg.protocol
    ev = Evaluation(title=cfg.title, config=str(cfg.path), protocol=proto,
                    models={m.name: _model_entry(m) for m in cfg.models},
                    datasets={t.label: _dataset_entry(t, plans[t.label])
                              for t in cfg.datasets})
    refs = {t.label: plan.reference_trajectory(t) for t in cfg.datasets}
    ev.reference = {t.label: collect.reference_analysis(t, plans[t.label], proto, evaldir)
                    for t in cfg.datasets}
    by_dataset: dict[str, list] = {}  # every run of a dataset, for the committee analysis
    for column in cfg.models:
        ev.results[column.name] = {}
        for t in cfg.datasets:
            m = column.for_task(t)
            if m is None:
                continue
            static = collect.static_errors(m, t, proto, evaldir)
            runs, nve = [], None
            for r in (r for r in tasks if r.model == m.name and r.dataset == t.label):
                if not _finished(r.rundir):
                    ev.errors.append(f"{m.name}/{t.label} {r.rundir.name}: "
                                     f"{_run_error(r.rundir)}")
                elif r.kind == "nve":
                    nve = collect.nve_drift(r)
                else:
                    runs.append(collect.run_metrics(r, plans[t.label], proto, refs[t.label],
                                                    ev.reference[t.label]))
            ev.runs += runs
            by_dataset.setdefault(t.label, []).extend(runs)
            if runs:
                ev.results[m.name][t.label] = collect.aggregate(m, t, static, runs,
                                                                plans[t.label], proto, nve)
    for label, runs in by_dataset.items():
        warning = committee_warning(runs)
        if warning is not None:
            ev.committee[label] = warning
    write_report(ev, evaldir)
    log(f"wrote {evaldir.report_md}, report.html, metrics.json and metrics.csv")
    if ev.errors:
        raise EgraffError(f"{len(ev.errors)} simulation(s) ended in an error (first: "
                          f"{ev.errors[0]}); the report of the rest is in {evaldir.root}; run "
                          "the same command again to retry them")
    return ev


def _run_error(rundir: Path) -> str:
    rec = _record(rundir)
    if rec is None:
        return "did not start (no run.json)"
    return rec.error or f"status {rec.status}"


def main_log(msg: str) -> None:
    print(msg, file=sys.stderr)
