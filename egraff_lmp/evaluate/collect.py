"""From run directories and models to the numbers of the study's tables (and beyond).

Units in every result: the unit is in the key where it is not one of these: WF in %,
JSD in nats, times in fs unless the key says ps, ms_per_step in ms, diffusivity in Å²/ps.
Each run's numbers are cached in its directory (``evaluation.json``) and each model's static
errors under ``static/``, so a resumed evaluation recomputes nothing already done.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import metrics
from ..compare import compare
from ..errors import EgraffError
from ..files import write_json
from ..run.record import RunRecord
from .config import Config, DatasetTask, Model
from .plan import RunTask, reference_trajectory, test_trajectory

STATIC_CACHE_VERSION = 1


def _calculator(model: Model):
    from ..calculator import resolve_calculator

    return resolve_calculator(model.artifact, model.calculator)


def static_errors(model: Model, task: DatasetTask, cfg: Config, outdir: Path) -> dict:
    """Energy/force MAE and static EV/FV of the model on the test frames (Table 1)."""
    from ..io import read_trajectory
    from ..predict import predict, write_npz

    cache = outdir / "static" / model.name / f"{task.label}.json"
    if cache.exists():
        old = json.loads(cache.read_text())
        for before, now in STATIC_KEYS_BEFORE.items():  # written by an earlier egraff-lmp
            if before in old:
                old[now] = old.pop(before)
        return old
    test = test_trajectory(task)
    n = cfg.protocol["static_frames"] or test.n_frames
    sel = test.frame_range(0, test.n_frames, max(1, test.n_frames // n))
    npz = cache.with_suffix(".npz")
    write_npz(npz, test, predict(_calculator(model), test, sel.start, sel.stop, sel.step))
    c = compare(read_trajectory(npz), test, ref_start=sel.start, ref_step=sel.step,
                rmax=cfg.protocol["rdf_rmax"], dr=cfg.protocol["rdf_dr"])
    has_e = c.e_mae_ev is not None
    out = {"frames": len(sel), "n_atoms": test.n_atoms,
           "e_mae_mev": 1000 * c.e_mae_ev if has_e else None,
           "e_mae_mev_per_atom": 1000 * c.e_mae_ev_per_atom if has_e else None,
           "f_mae_mev_per_a": 1000 * c.f_mae_ev_per_a if c.f_mae_ev_per_a is not None
           else None,
           "ev_static": c.ev, "fv_static": c.fv,
           "ev_referenced_static": c.ev_referenced,
           "notes": ([] if has_e else ["the test frames carry no energies: energy MAE and EV "
                                       "refused"])}
    write_json(cache, out)
    return out


#: the static errors' keys before they carried their units (read from old directories)
STATIC_KEYS_BEFORE = {"e_mae": "e_mae_mev", "e_mae_per_atom": "e_mae_mev_per_atom",
                      "f_mae": "f_mae_mev_per_a"}


def decorrelation_time(fv_t, dt_frame_fs: float, threshold: float) -> float | None:
    """First time (fs) at which FV(t) exceeds ``threshold``; None if it never does."""
    if fv_t is None:
        return None
    above = np.nonzero(np.asarray(fv_t) > threshold)[0]
    return float(above[0] * dt_frame_fs) if len(above) else None


def run_metrics(run: RunTask, task: DatasetTask, info: dict, cfg: Config, ref,
                ref_adf: dict | None = None) -> dict:
    """The comparison of one finished run with the reference, cached in its directory;
    ``ref_adf`` ({"cutoff", "adf"}) adds the bond-angle distribution and its JSD."""
    from ..analysis import MSD, VDOS
    from ..analysis.angles import BondAngles
    from ..io import read_trajectory
    from ..io.lammps_write import from_lammps, needs_orientation, prism

    cache = run.rundir / "evaluation.json"
    if cache.exists():
        return json.loads(cache.read_text())
    rec = RunRecord.load(run.rundir)
    out = {"model": run.model, "dataset": run.dataset, "k": run.k,
           "start_frame": run.start_frame, "velocities": run.velocities,
           "status": rec.status, "steps_done": rec.steps_done,
           "failed_at_step": rec.failed_at_step, "failure": rec.failure,
           "ms_per_step": rec.ms_per_step, "engine": rec.engine,
           "timestep_fs": info["timestep_fs"]}
    traj = read_trajectory(rec.dump, types=rec.symbols, log=run.rundir / "log.lammps")
    aligned = info["aligned"]
    ref_cell = ref[run.start_frame].cell
    if needs_orientation(ref_cell):  # LAMMPS rotated/reduced the cell: forces back for FV
        from ..trajectory import TransformedTrajectory

        box = prism(ref_cell)
        traj = TransformedTrajectory(traj, lambda fr: from_lammps(fr, ref_cell, box))
    frames_usable = traj.n_frames
    if frames_usable < 2:
        out["notes"] = ["fewer than 2 frames: nothing to compare"]
        write_json(cache, out)
        return out
    c = compare(traj, ref, rmax=cfg.protocol["rdf_rmax"], dr=cfg.protocol["rdf_dr"],
                ref_start=run.start_frame if aligned else None, time_aligned=aligned)
    dt_frame = info["timestep_fs"] * info["dump_every"]
    # a run's cached numbers (evaluation.json): WF in %, JSD in nats, r in Å
    out.update(wf=c.wf_percent, wf_sqrt=c.wf_sqrt_percent, jsd=c.jsd_nats,
               wf_pairs=c.wf_pairs_percent, jsd_pairs=c.jsd_pairs_nats, ev=c.ev,
               ev_std=c.ev_std, fv=c.fv, fv_std=c.fv_std, ev_t=c.ev_t, fv_t=c.fv_t,
               ev_referenced=c.ev_referenced, ev_referenced_t=c.ev_referenced_t,
               n_frames_compared=c.n_frames_compared, notes=c.notes, r=c.r_a, rdf=c.rdf)
    for key in ("ev", "fv", "ev_referenced"):  # every run over one window (start_frames)
        series = out[f"{key}_t"]
        if series is not None:
            series = np.asarray(series)[:info["window"] + 1]
            out.update({f"{key}_t": series, key: metrics.geometric_mean(series),
                        f"{key}_std": float(np.std(series))})
    out["n_frames_compared"] = min(out["n_frames_compared"], info["window"] + 1)
    out["t_decorrelation_fs"] = decorrelation_time(c.fv_t, dt_frame,
                                                   cfg.protocol["decorrelation_fv"])
    # transport over as many frames as the reference analysis uses (reference_analysis)
    n_msd = min(traj.n_frames, info["n_reference_frames"])
    msd = MSD(traj, dt_frame).run(0, n_msd).results
    out.update(msd_t=msd.lagtimes, msd=msd.msd["total"], diffusivity=msd.diffusivity,
               msd_internal=msd.internal)
    if n_msd >= 5 and aligned:  # a VDOS is compared only with a trajectory's
        vd = VDOS(traj, dt_frame).run(0, n_msd).results
        out.update(vdos_freq=vd.frequency, vdos=vd.vdos["total"],
                   vdos_extent_thz=vd.f_extent_thz)
        # the JSD over as many frames as the floor's stretches (floor_frames), the run's
        # first ones against the reference's from the run's start: the same resolution
        n_v = min(floor_frames(ref.n_frames, info, cfg), traj.n_frames,
                  ref.n_frames - run.start_frame)
        if n_v >= 5:
            a = VDOS(traj, dt_frame).run(0, n_v).results.vdos["total"]
            b = VDOS(ref, dt_frame).run(run.start_frame, run.start_frame + n_v).results
            out.update(vdos_jsd=metrics.jensen_shannon(a, b.vdos["total"]),
                       vdos_jsd_frames=n_v)
    if ref_adf:
        adf = BondAngles(traj, ref_adf["cutoff"]).run().results
        out.update(adf=adf.adf["total"],
                   adf_jsd=metrics.jensen_shannon(adf.adf["total"], ref_adf["adf"]))
    write_json(cache, out)
    return json.loads(cache.read_text())


def nve_drift(run: RunTask) -> dict:
    """Total-energy drift of the NVE run (``egraff-lmp run`` computes it from the log)."""
    rec = RunRecord.load(run.rundir)
    d = rec.energy_drift or {}
    drift = d.get("mev_per_atom_per_ps")
    return {"nve_drift_mev_per_atom_per_ps": drift,
            "nve_abs_drift": abs(drift) if drift is not None else None,
            "nve_max_abs_dev_ev": d.get("max_abs_dev_ev"),
            "nve_steps_done": rec.steps_done, "nve_status": rec.status}


def reference_analysis(task: DatasetTask, info: dict, cfg: Config, outdir: Path) -> dict:
    """RDF and bond-angle distribution of the whole reference and, for a trajectory, its
    MSD/diffusivity and VDOS."""
    from ..analysis import MSD, RDF, VDOS, default_rmax
    from ..analysis.angles import BondAngles, covalent_cutoffs, first_minimum

    cache = outdir / "reference" / f"{task.label}.json"
    if cache.exists():
        out = json.loads(cache.read_text())
        have = set(out.get("itself", {}))
        need = {"adf_jsd", "wf_pairs"} | ({"vdos_jsd", "diffusivity"}
                                          if task.dataset.contiguous else set())
        if not need <= have:
            # written by an earlier version
            out["itself"] = reference_itself(reference_trajectory(task), task, info, cfg,
                                             out.get("bond_cutoff"))
            write_json(cache, out)
        return out
    ref = reference_trajectory(task)
    rmax = cfg.protocol["rdf_rmax"] or default_rmax(ref[0])
    rdf = RDF(ref, rmax=rmax, dr=cfg.protocol["rdf_dr"]).run().results
    molecule = ref[0].cell is None
    out = {"label": task.label, "n_frames": ref.n_frames, "n_atoms": ref.n_atoms,
           "r": rdf.r, "rdf": rdf.rdf, "rdf_normalisation": rdf.normalisation,
           "molecule": molecule, "has_energy": ref[0].energy is not None}
    if cfg.protocol["bond_cutoff"]:
        cutoff, rule = float(cfg.protocol["bond_cutoff"]), "protocol.bond_cutoff"
    elif molecule:  # bonds, not the first shell of a pair density that mixes neighbours
        cutoff = {f"{a}-{b}": v for (a, b), v in covalent_cutoffs(ref.species).items()
                  if a <= b}
        rule = "covalent radii × 1.2"
    else:
        cutoff = first_minimum(rdf.r, rdf.rdf["total"])
        rule = "the first minimum of the reference RDF"
    adf = BondAngles(ref, cutoff).run().results
    out.update(bond_cutoff=cutoff, bond_rule=rule, angles=adf.angles, adf=adf.adf["total"])
    if task.dataset.contiguous:
        # MSD over the simulations' span; the VDOS over the whole reference (its resolution
        # is 1 / the reference's length), and the runs over as many frames as they have
        dt = task.dataset.frame_spacing_fs
        n = min(ref.n_frames, cfg.protocol["steps"] // info["dump_every"] + 1)
        msd = MSD(ref, dt).run(0, n).results
        out.update(msd_t=msd.lagtimes, msd=msd.msd["total"], diffusivity=msd.diffusivity,
                   msd_internal=msd.internal)
        if ref.n_frames >= 5:
            vd = VDOS(ref, dt).run().results
            out.update(vdos_freq=vd.frequency, vdos=vd.vdos["total"],
                       vdos_resolution_thz=vd.resolution_thz,
                       vdos_extent_thz=vd.f_extent_thz)
    out["itself"] = reference_itself(ref, task, info, cfg, cutoff)
    write_json(cache, out)
    return json.loads(cache.read_text())


def simulation_frames(info: dict, cfg: Config) -> int:
    return cfg.protocol["steps"] // info["dump_every"] + 1


def floor_frames(n_ref: int, info: dict, cfg: Config) -> int:
    """Frames of each of the reference's two stretches in :func:`reference_itself` (and of
    the runs' VDOS comparisons): a simulation's frame count where the reference holds two
    such stretches, else half the reference."""
    n_sim = simulation_frames(info, cfg)
    return n_sim if 2 * n_sim <= n_ref else n_ref // 2


def reference_itself(ref, task: DatasetTask, info: dict, cfg: Config,
                     bond_cutoff: float | None = None) -> dict:
    """The reference against itself: the floor that sampling alone sets under WF, JSD, EV
    and FV. Two disjoint stretches with the simulations' frame count where the reference
    holds twice that many, else its two halves (said in ``how``); compared as a run is
    (RDF of each stretch, and frame by frame in time where the reference is a
    trajectory), and the bond-angle distributions of the two stretches (``adf_jsd``)."""
    n_sim, n = simulation_frames(info, cfg), floor_frames(ref.n_frames, info, cfg)
    if n == n_sim:
        how = (f"two disjoint stretches of {n} reference frames, the frame count of a "
               "simulation")
    else:
        how = (f"the two halves of the reference, {n} frames each (a simulation has {n_sim}; "
               f"the reference {ref.n_frames})")
    if n < 1:
        return {"how": "the reference has fewer than 2 frames: no comparison", "frames": 0}
    c = compare(ref, ref, rmax=cfg.protocol["rdf_rmax"], dr=cfg.protocol["rdf_dr"], start=0,
                stop=n, ref_start=n, ref_stop=2 * n, time_aligned=task.dataset.contiguous)
    out = {"how": how, "frames": n, "simulation_frames": n_sim, "wf": c.wf_percent,
           "jsd": c.jsd_nats, "ev": c.ev, "ev_referenced": c.ev_referenced, "fv": c.fv,
           "wf_pairs": c.wf_pairs_percent}
    if bond_cutoff:
        from ..analysis.angles import BondAngles

        a = BondAngles(ref, bond_cutoff).run(0, n).results.adf["total"]
        b = BondAngles(ref, bond_cutoff).run(n, 2 * n).results.adf["total"]
        out["adf_jsd"] = metrics.jensen_shannon(a, b)
    if task.dataset.contiguous and n >= 5:
        from ..analysis import VDOS

        dt = task.dataset.frame_spacing_fs
        a = VDOS(ref, dt).run(0, n).results.vdos["total"]
        b = VDOS(ref, dt).run(n, 2 * n).results.vdos["total"]
        out["vdos_jsd"] = metrics.jensen_shannon(a, b)
        # the second stretch's diffusivity, beside the reference's over the first
        from ..analysis import MSD

        out["diffusivity"] = MSD(ref, dt).run(n, 2 * n).results.diffusivity
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


def aggregate(model: Model, task: DatasetTask, static: dict, runs: list[dict],
              info: dict, cfg: Config) -> dict:
    """Per model × dataset: the study's numbers and the ones beyond it."""
    if not runs:
        raise EgraffError(f"{model.name} on {task.label}: no run finished")
    done = [r for r in runs if r.get("wf") is not None]
    failed = [r for r in runs if r["status"] == "failed"]
    pairs = sorted({k for r in done for k in (r.get("wf_pairs") or {})})
    out = dict(static)
    out.update({
        "runs": len(runs), "steps": cfg.protocol["steps"],
        "timestep_fs": info["timestep_fs"], "temperature": task.dataset.temperature,
        "wf": _mean(r["wf"] for r in done), "wf_std": _std(r["wf"] for r in done),
        "jsd": _mean(r["jsd"] for r in done), "jsd_std": _std(r["jsd"] for r in done),
        "wf_pairs": {p: _mean((r.get("wf_pairs") or {}).get(p) for r in done) for p in pairs},
        "jsd_pairs": {p: _mean((r.get("jsd_pairs") or {}).get(p) for r in done)
                      for p in pairs},
        "ev": _mean(r.get("ev") for r in done), "ev_std": _std(r.get("ev") for r in done),
        "ev_referenced": _mean(r.get("ev_referenced") for r in done),
        "ev_referenced_std": _std(r.get("ev_referenced") for r in done),
        "fv": _mean(r.get("fv") for r in done), "fv_std": _std(r.get("fv") for r in done),
        "t_decorrelation_fs": _mean(r.get("t_decorrelation_fs") for r in done),
        "adf_jsd": _mean(r.get("adf_jsd") for r in done),
        "vdos_jsd": _mean(r.get("vdos_jsd") for r in done),
        "stable_runs": len(runs) - len(failed),
        "time_to_failure_ps": _mean(r["failed_at_step"] * info["timestep_fs"] / 1000
                                    for r in failed),
        "ms_per_step": _mean(r.get("ms_per_step") for r in runs),
        "training_time_s": model.training_time_s,
        "diffusivity": {s: _mean(r["diffusivity"].get(s) for r in done if r.get("diffusivity"))
                        for s in sorted({k for r in done for k in (r.get("diffusivity") or {})})},
        "engine": sorted({r.get("engine") for r in runs if r.get("engine")}),
        "vdos_extent_thz": max((r.get("vdos_extent_thz") or 0.0 for r in done), default=None),
    })
    out["inference_s_per_1000_steps"] = out["ms_per_step"]  # x ms/step = x s per 1000 steps
    out["curves"] = {
        "r": done[0]["r"] if done else None,
        "rdf": {k: _mean_curve(r["rdf"][k] for r in done) for k in (done[0]["rdf"] if done
                                                                      else {})},
        "ev_t": _mean_curve(r.get("ev_t") for r in done),
        "fv_t": _mean_curve(r.get("fv_t") for r in done),
        "dt_frame_fs": info["timestep_fs"] * info["dump_every"],
        "msd_t": done[0]["msd_t"] if done else None,
        "msd": _mean_curve(r.get("msd") for r in done),
        # runs cut short have a coarser frequency grid: the full-length runs' mean
        "vdos_freq": max((r.get("vdos_freq") for r in done if r.get("vdos_freq") is not None),
                         key=len, default=None),
        "vdos": _mean_curve(r.get("vdos") for r in done
                            if r.get("vdos") is not None and len(r["vdos"]) == max(
                                len(x.get("vdos") or []) for x in done)),
        "adf": _mean_curve(r.get("adf") for r in done),
    }
    notes = list(static.get("notes", [])) + list(info.get("notes", []))
    for r in runs:
        if r["status"] == "failed":
            notes.append(f"run {r['k']} stopped at step {r['failed_at_step']}: {r['failure']}")
    out["notes"] = notes
    return out
