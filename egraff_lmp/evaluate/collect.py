"""From run directories and models to the numbers of the study's tables (and beyond): the
records of :mod:`.records` (units in their field names).

Each run's :class:`RunMetrics` is cached in its directory, each model's
:class:`StaticErrors` under ``static/`` and each dataset's :class:`ReferenceAnalysis` under
``reference/`` (see :class:`~.evaldir.EvalDir`), so a resumed evaluation recomputes nothing
already done; caches an earlier egraff-lmp wrote are read as they are (:mod:`.legacy`).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from .. import metrics
from ..compare import compare
from ..errors import EgraffError
from ..run.record import RunRecord
from . import legacy
from .config import DatasetTask, Model
from .deviation import read_model_devi
from .evaldir import EvalDir
from .plan import DEVI_FILE, RunTask, reference_trajectory, test_trajectory
from .records import (
    CellResult,
    Curves,
    DatasetPlan,
    NveDrift,
    Protocol,
    ReferenceAnalysis,
    ReferenceFloor,
    RunMetrics,
    StaticErrors,
)


def _calculator(model: Model):
    from ..calculator import resolve_calculator

    return resolve_calculator(model.artifact, model.calculator, head=model.head)


def _evaldir(evaldir) -> EvalDir:
    return evaldir if isinstance(evaldir, EvalDir) else EvalDir(evaldir)


def static_errors(model: Model, task: DatasetTask, protocol: Protocol | None,
                  evaldir: EvalDir) -> StaticErrors:
    """Energy/force MAE and static EV/FV of the model on the test frames (Table 1)."""
    from ..io import read_trajectory
    from ..predict import predict, write_npz

    evaldir = _evaldir(evaldir)
    cache = evaldir.static(model.name, task.label)
    if cache.exists():
        return StaticErrors.load(cache)  # also what an earlier egraff-lmp wrote
    test = test_trajectory(task)
    n = protocol.static_frames or test.n_frames
    sel = test.frame_range(0, test.n_frames, max(1, test.n_frames // n))
    npz = evaldir.static_predictions(model.name, task.label)
    write_npz(npz, test, predict(_calculator(model), test, sel.start, sel.stop, sel.step))
    c = compare(read_trajectory(npz), test, ref_start=sel.start, ref_step=sel.step,
                rmax=protocol.rdf_rmax_a, dr=protocol.rdf_dr_a)
    has_e = c.e_mae_ev is not None
    StaticErrors(
        frames=len(sel), n_atoms=test.n_atoms,
        e_mae_mev=1000 * c.e_mae_ev if has_e else None,
        e_mae_mev_per_atom=1000 * c.e_mae_ev_per_atom if has_e else None,
        f_mae_mev_per_a=1000 * c.f_mae_ev_per_a if c.f_mae_ev_per_a is not None else None,
        ev=c.ev, fv=c.fv, ev_referenced=c.ev_referenced,
        notes=[] if has_e else ["the test frames carry no energies: energy MAE and EV "
                                "refused"]).save(cache)
    return StaticErrors.load(cache)


def decorrelation_time(fv_t, dt_frame_fs: float, threshold: float) -> float | None:
    """First time (fs) at which FV(t) exceeds ``threshold``; None if it never does."""
    if fv_t is None:
        return None
    above = np.nonzero(np.asarray(fv_t) > threshold)[0]
    return float(above[0] * dt_frame_fs) if len(above) else None


def run_metrics(run: RunTask, plan: DatasetPlan, protocol: Protocol, ref,
                reference: ReferenceAnalysis | None = None) -> RunMetrics:
    """The comparison of one finished run with the reference ``ref`` (a trajectory), cached
    in its directory; with the dataset's ``reference`` analysis, the bond-angle distribution
    (bonds by its cutoff) and its JSD."""
    from ..analysis import MSD, VDOS
    from ..analysis.angles import BondAngles
    from ..io import read_trajectory
    from ..io.lammps_write import from_lammps, needs_orientation, prism

    cache = EvalDir.run_metrics(run.rundir)
    if cache.exists():
        return RunMetrics.load(cache)
    rec = RunRecord.load(run.rundir)
    done = rec.result
    out = RunMetrics(model=run.model, dataset=run.dataset, k=run.k,
                     start_frame=run.start_frame, velocities=run.velocities,
                     status=rec.status, steps_done=done.steps_done,
                     failed_at_step=done.failed_at_step, failure=done.failure,
                     ms_per_step=done.ms_per_step, engine=rec.engine,
                     timestep_fs=plan.timestep_fs)
    devi = read_model_devi(run.rundir / DEVI_FILE)
    if devi is not None:  # a committee ran beside the model: deviation per sample
        out.devi_t_fs = (devi["step"] * plan.timestep_fs).tolist()
        out.max_devi_f_ev_per_a = devi["max_devi_f"].tolist()
    traj = read_trajectory(rec.dump, types=done.symbols, log=run.rundir / "log.lammps")
    aligned = plan.aligned
    ref_cell = ref[run.start_frame].cell
    if needs_orientation(ref_cell):  # LAMMPS rotated/reduced the cell: forces back for FV
        from ..trajectory import TransformedTrajectory

        box = prism(ref_cell)
        traj = TransformedTrajectory(traj, lambda fr: from_lammps(fr, ref_cell, box))
    if traj.n_frames < 2:
        out.notes = ["fewer than 2 frames: nothing to compare"]
        out.save(cache)
        return out
    c = compare(traj, ref, rmax=protocol.rdf_rmax_a, dr=protocol.rdf_dr_a,
                ref_start=run.start_frame if aligned else None, time_aligned=aligned)
    dt_frame = plan.dt_frame_fs
    out = replace(out, wf_percent=c.wf_percent, wf_sqrt_percent=c.wf_sqrt_percent,
                  jsd_nats=c.jsd_nats, wf_pairs_percent=c.wf_pairs_percent,
                  jsd_pairs_nats=c.jsd_pairs_nats, ev=c.ev, ev_std=c.ev_std, fv=c.fv,
                  fv_std=c.fv_std, ev_t=c.ev_t, fv_t=c.fv_t, ev_referenced=c.ev_referenced,
                  ev_referenced_std=c.ev_referenced_std, ev_referenced_t=c.ev_referenced_t,
                  n_frames_compared=c.n_frames_compared, notes=c.notes, r_a=c.r_a,
                  rdf=c.rdf)
    for key in ("ev", "fv", "ev_referenced"):  # every run over one window (start_frames)
        series = getattr(out, f"{key}_t")
        if series is not None:
            series = np.asarray(series)[:plan.window_frames + 1]
            setattr(out, f"{key}_t", series)
            setattr(out, key, metrics.geometric_mean(series))
            setattr(out, f"{key}_std", float(np.std(series)))
    out.n_frames_compared = min(out.n_frames_compared, plan.window_frames + 1)
    out.t_decorrelation_fs = decorrelation_time(c.fv_t, dt_frame, protocol.decorrelation_fv)
    # transport over as many frames as the reference analysis uses (reference_analysis)
    n_msd = min(traj.n_frames, plan.n_reference_frames)
    msd = MSD(traj, dt_frame).run(0, n_msd).results
    out.msd_t_fs, out.msd_a2 = msd.lagtimes, msd.msd["total"]
    out.diffusivity_a2_per_ps, out.msd_internal = msd.diffusivity, msd.internal
    if n_msd >= 5 and aligned:  # a VDOS is compared only with a trajectory's
        vd = VDOS(traj, dt_frame).run(0, n_msd).results
        out.vdos_freq_thz, out.vdos_per_thz = vd.frequency, vd.vdos["total"]
        out.vdos_extent_thz = vd.f_extent_thz
        # the JSD over as many frames as the floor's stretches (floor_frames), the run's
        # first ones against the reference's from the run's start: the same resolution
        n_v = min(floor_frames(ref.n_frames, plan, protocol), traj.n_frames,
                  ref.n_frames - run.start_frame)
        if n_v >= 5:
            a = VDOS(traj, dt_frame).run(0, n_v).results.vdos["total"]
            b = VDOS(ref, dt_frame).run(run.start_frame, run.start_frame + n_v).results
            out.vdos_jsd_nats = metrics.jensen_shannon(a, b.vdos["total"])
            out.vdos_jsd_frames = n_v
    if reference is not None:
        adf = BondAngles(traj, reference.bond_cutoff_a).run().results
        out.adf_per_degree = adf.adf["total"]
        out.adf_jsd_nats = metrics.jensen_shannon(adf.adf["total"], reference.adf_per_degree)
    out.save(cache)
    return RunMetrics.load(cache)  # as JSON has it (NaN: None), as a resumed run reads it


def nve_drift(run: RunTask) -> NveDrift:
    """Total-energy drift of the NVE run (``egraff-lmp run`` computes it from the log)."""
    rec = RunRecord.load(run.rundir)
    d = rec.energy_drift or {}
    return NveDrift(drift_mev_per_atom_per_ps=d.get("mev_per_atom_per_ps"),
                    max_abs_dev_ev=d.get("max_abs_dev_ev"),
                    steps_done=rec.result.steps_done, status=rec.status)


def reference_analysis(task: DatasetTask, plan: DatasetPlan, protocol: Protocol,
                       evaldir: EvalDir) -> ReferenceAnalysis:
    """RDF and bond-angle distribution of the whole reference and, for a trajectory, its
    MSD/diffusivity and VDOS."""
    from ..analysis import MSD, RDF, VDOS, default_rmax
    from ..analysis.angles import BondAngles, covalent_cutoffs, first_minimum

    cache = evaldir.reference(task.label)
    if cache.exists():
        raw = json.loads(cache.read_text())
        out = ReferenceAnalysis.from_dict(raw, cache)
        if legacy.itself_incomplete(raw, task.dataset.contiguous):
            # written by an earlier version
            out.itself = reference_itself(reference_trajectory(task), task, plan, protocol,
                                          out.bond_cutoff_a)
            out.save(cache)
        return out
    ref = reference_trajectory(task)
    rmax = protocol.rdf_rmax_a or default_rmax(ref[0])
    rdf = RDF(ref, rmax=rmax, dr=protocol.rdf_dr_a).run().results
    molecule = ref[0].cell is None
    out = ReferenceAnalysis(label=task.label, n_frames=ref.n_frames, n_atoms=ref.n_atoms,
                            r_a=rdf.r, rdf=rdf.rdf, rdf_normalisation=rdf.normalisation,
                            molecule=molecule, has_energy=ref[0].energy is not None)
    if protocol.bond_cutoff_a:
        cutoff, rule = float(protocol.bond_cutoff_a), "protocol.bond_cutoff"
    elif molecule:  # bonds, not the first shell of a pair density that mixes neighbours
        cutoff = {f"{a}-{b}": v for (a, b), v in covalent_cutoffs(ref.species).items()
                  if a <= b}
        rule = "covalent radii × 1.2"
    else:
        cutoff = first_minimum(rdf.r, rdf.rdf["total"])
        rule = "the first minimum of the reference RDF"
    adf = BondAngles(ref, cutoff).run().results
    out.bond_cutoff_a, out.bond_rule = cutoff, rule
    out.angles_deg, out.adf_per_degree = adf.angles, adf.adf["total"]
    if task.dataset.contiguous:
        # MSD over the simulations' span; the VDOS over the whole reference (its resolution
        # is 1 / the reference's length), and the runs over as many frames as they have
        dt = task.dataset.frame_spacing_fs
        n = min(ref.n_frames, protocol.steps // plan.dump_every_steps + 1)
        msd = MSD(ref, dt).run(0, n).results
        out.msd_t_fs, out.msd_a2 = msd.lagtimes, msd.msd["total"]
        out.diffusivity_a2_per_ps, out.msd_internal = msd.diffusivity, msd.internal
        if ref.n_frames >= 5:
            vd = VDOS(ref, dt).run().results
            out.vdos_freq_thz, out.vdos_per_thz = vd.frequency, vd.vdos["total"]
            out.vdos_resolution_thz, out.vdos_extent_thz = vd.resolution_thz, vd.f_extent_thz
    out.itself = reference_itself(ref, task, plan, protocol, cutoff)
    out.save(cache)
    return ReferenceAnalysis.load(cache)


def simulation_frames(plan: DatasetPlan, protocol: Protocol) -> int:
    return protocol.steps // plan.dump_every_steps + 1


def floor_frames(n_ref: int, plan: DatasetPlan, protocol: Protocol) -> int:
    """Frames of each of the reference's two stretches in :func:`reference_itself` (and of
    the runs' VDOS comparisons): a simulation's frame count where the reference holds two
    such stretches, else half the reference."""
    n_sim = simulation_frames(plan, protocol)
    return n_sim if 2 * n_sim <= n_ref else n_ref // 2


def reference_itself(ref, task: DatasetTask, plan: DatasetPlan, protocol: Protocol,
                     bond_cutoff=None) -> ReferenceFloor:
    """The reference against itself: the floor that sampling alone sets under WF, JSD, EV
    and FV. Two disjoint stretches with the simulations' frame count where the reference
    holds twice that many, else its two halves (said in ``how``); compared as a run is
    (RDF of each stretch, and frame by frame in time where the reference is a
    trajectory), and the bond-angle distributions of the two stretches (``adf_jsd_nats``;
    ``bond_cutoff`` in Å, or per element pair)."""
    n_sim, n = simulation_frames(plan, protocol), floor_frames(ref.n_frames, plan, protocol)
    if n == n_sim:
        how = (f"two disjoint stretches of {n} reference frames, the frame count of a "
               "simulation")
    else:
        how = (f"the two halves of the reference, {n} frames each (a simulation has {n_sim}; "
               f"the reference {ref.n_frames})")
    if n < 1:
        return ReferenceFloor(how="the reference has fewer than 2 frames: no comparison",
                              frames=0)
    c = compare(ref, ref, rmax=protocol.rdf_rmax_a, dr=protocol.rdf_dr_a, start=0,
                stop=n, ref_start=n, ref_stop=2 * n, time_aligned=task.dataset.contiguous)
    out = ReferenceFloor(how=how, frames=n, simulation_frames=n_sim, wf_percent=c.wf_percent,
                         jsd_nats=c.jsd_nats, ev=c.ev, ev_referenced=c.ev_referenced,
                         fv=c.fv, wf_pairs_percent=c.wf_pairs_percent)
    if bond_cutoff:
        from ..analysis.angles import BondAngles

        a = BondAngles(ref, bond_cutoff).run(0, n).results.adf["total"]
        b = BondAngles(ref, bond_cutoff).run(n, 2 * n).results.adf["total"]
        out.adf_jsd_nats = metrics.jensen_shannon(a, b)
    if task.dataset.contiguous and n >= 5:
        from ..analysis import VDOS

        dt = task.dataset.frame_spacing_fs
        a = VDOS(ref, dt).run(0, n).results.vdos["total"]
        b = VDOS(ref, dt).run(n, 2 * n).results.vdos["total"]
        out.vdos_jsd_nats = metrics.jensen_shannon(a, b)
        # the second stretch's diffusivity, beside the reference's over the first
        from ..analysis import MSD

        out.diffusivity_a2_per_ps = MSD(ref, dt).run(n, 2 * n).results.diffusivity
    return out


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _std(values):
    v = [x for x in values if x is not None]
    return float(np.std(v)) if v else None


def _mean_curve(curves):
    curves = [np.asarray(c, dtype=float) for c in curves if c is not None]
    if not curves:
        return None
    n = min(len(c) for c in curves)
    return np.mean([c[:n] for c in curves], axis=0)


def aggregate(model: Model, task: DatasetTask, static: StaticErrors, runs: list[RunMetrics],
              plan: DatasetPlan, protocol: Protocol, nve: NveDrift | None = None
              ) -> CellResult:
    """Per model × dataset: the study's numbers and the ones beyond it."""
    if not runs:
        raise EgraffError(f"{model.name} on {task.label}: no run finished")
    done = [r for r in runs if r.wf_percent is not None]
    failed = [r for r in runs if r.status == "failed"]
    pairs = sorted({k for r in done for k in (r.wf_pairs_percent or {})})
    species = sorted({k for r in done for k in (r.diffusivity_a2_per_ps or {})})
    longest_vdos = max((len(r.vdos_per_thz or []) for r in done), default=0)
    curves = Curves(
        r_a=done[0].r_a if done else None,
        rdf={k: _mean_curve(r.rdf[k] for r in done) for k in (done[0].rdf if done else {})},
        ev_t=_mean_curve(r.ev_t for r in done),
        fv_t=_mean_curve(r.fv_t for r in done),
        dt_frame_fs=plan.dt_frame_fs,
        msd_t_fs=done[0].msd_t_fs if done else None,
        msd_a2=_mean_curve(r.msd_a2 for r in done),
        # runs cut short have a coarser frequency grid: the full-length runs' mean
        vdos_freq_thz=max((r.vdos_freq_thz for r in done if r.vdos_freq_thz is not None),
                          key=len, default=None),
        vdos_per_thz=_mean_curve(r.vdos_per_thz for r in done
                                 if r.vdos_per_thz is not None
                                 and len(r.vdos_per_thz) == longest_vdos),
        adf_per_degree=_mean_curve(r.adf_per_degree for r in done))
    notes = list(static.notes) + list(plan.notes)
    notes += [f"run {r.k} stopped at step {r.failed_at_step}: {r.failure}" for r in failed]
    return CellResult(
        static=static, runs=len(runs), steps=protocol.steps, timestep_fs=plan.timestep_fs,
        temperature_k=task.dataset.temperature,
        wf_percent=_mean(r.wf_percent for r in done),
        wf_std_percent=_std(r.wf_percent for r in done),
        jsd_nats=_mean(r.jsd_nats for r in done), jsd_std_nats=_std(r.jsd_nats for r in done),
        wf_pairs_percent={p: _mean((r.wf_pairs_percent or {}).get(p) for r in done)
                          for p in pairs},
        jsd_pairs_nats={p: _mean((r.jsd_pairs_nats or {}).get(p) for r in done)
                        for p in pairs},
        ev=_mean(r.ev for r in done), ev_std=_std(r.ev for r in done),
        ev_referenced=_mean(r.ev_referenced for r in done),
        ev_referenced_std=_std(r.ev_referenced for r in done),
        fv=_mean(r.fv for r in done), fv_std=_std(r.fv for r in done),
        t_decorrelation_fs=_mean(r.t_decorrelation_fs for r in done),
        adf_jsd_nats=_mean(r.adf_jsd_nats for r in done),
        vdos_jsd_nats=_mean(r.vdos_jsd_nats for r in done),
        stable_runs=len(runs) - len(failed),
        time_to_failure_ps=_mean(r.failed_at_step * plan.timestep_fs / 1000 for r in failed),
        ms_per_step=_mean(r.ms_per_step for r in runs),
        training_time_s=model.training_time_s,
        diffusivity_a2_per_ps={s: _mean(r.diffusivity_a2_per_ps.get(s) for r in done
                                        if r.diffusivity_a2_per_ps) for s in species},
        engines=sorted({r.engine for r in runs if r.engine}),
        vdos_extent_thz=max((r.vdos_extent_thz or 0.0 for r in done), default=None),
        curves=curves, nve=nve, notes=notes)
