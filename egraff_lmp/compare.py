"""Compare a trajectory with a reference: RDF (WF, JSD) and time-aligned EV/FV, MAE.

``compare(traj, ref, ...)`` returns a :class:`Comparison` (units in the field names);
``Comparison.to_dict()`` is what ``egraff-lmp compare --json`` writes (format
``egraff-lmp-comparison``, version 1).
Frame t of the selected trajectory frames is compared with frame t of the selected
reference frames (both starting from the same configuration); frames present on only one
side are counted in ``frames_missing`` and never silently dropped. EV/FV and MAE need the
same atoms in the same order on both sides; otherwise they are ``null`` and ``notes`` says
why, while the RDF comparison still runs (structure is intensive: atom counts may differ).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import metrics
from .analysis import RDF, default_rmax
from .errors import EgraffError
from .trajectory import Trajectory, minimum_image

#: Positions closer than this (Å) in every compared frame make the comparison "static":
#: the trajectory is a model evaluated on the reference frames (float32 dumps allowed).
STATIC_TOLERANCE = 1e-3


FORMAT, VERSION = "egraff-lmp-comparison", 1


@dataclass
class Comparison:
    """A trajectory against a reference. RDF: Wright's factor (%) and its square root (%),
    Jensen–Shannon divergence (nats), total and per element pair; EV/FV: geometric mean,
    std and the time series over the time-aligned frames (dimensionless), EV as the study
    defines it on the files' energies and, beside it, ``ev_referenced`` on energies measured
    from per-species energies fitted to the compared reference frames (E − Σ n_s E_s,
    ``species_energies_ev``; EV is not invariant under a shift of the energy zero); energy MAE (eV,
    eV/atom) and force MAE (eV/Å) — the model's static error when ``static`` (the same
    positions on both sides); which frames were compared or are missing on either side;
    the RDFs themselves (r in Å, g(r) or p(r) in 1/Å per ``rdf_normalisation``)."""

    wf_percent: float
    wf_sqrt_percent: float
    jsd_nats: float
    wf_pairs_percent: dict[str, float]
    wf_sqrt_pairs_percent: dict[str, float]
    jsd_pairs_nats: dict[str, float | None]
    ev: float | None
    ev_std: float | None
    fv: float | None
    fv_std: float | None
    ev_t: list | None
    fv_t: list | None
    ev_referenced: float | None
    ev_referenced_std: float | None
    ev_referenced_t: list | None
    species_energies_ev: dict[str, float] | None
    e_mae_ev: float | None
    e_mae_ev_per_atom: float | None
    f_mae_ev_per_a: float | None
    static: bool | None
    n_frames_compared: int
    frames_compared: dict | None
    frames_missing: dict
    trajectory: str
    reference: str
    n_atoms: int
    n_atoms_ref: int
    n_frames_rdf: int
    n_frames_rdf_ref: int
    rmax_a: float
    dr_a: float
    rdf_normalisation: str
    r_a: np.ndarray
    rdf: dict
    rdf_ref: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}


_UNITS = {"wf": "wf_percent", "wf_sqrt": "wf_sqrt_percent", "jsd": "jsd_nats",
          "wf_pairs": "wf_pairs_percent", "wf_sqrt_pairs": "wf_sqrt_pairs_percent",
          "jsd_pairs": "jsd_pairs_nats", "e_mae": "e_mae_ev",
          "e_mae_per_atom": "e_mae_ev_per_atom", "f_mae": "f_mae_ev_per_a", "rmax": "rmax_a",
          "dr": "dr_a", "r": "r_a"}


def _first(traj: Trajectory, sel: range):
    if len(sel) == 0:
        raise EgraffError(f"{traj.path}: no frames selected (the file has {traj.n_frames})")
    return traj[sel[0]]


def compare(traj: Trajectory, ref: Trajectory, rmax=None, dr=0.05, start=None, stop=None,
            step=None, ref_start=None, ref_stop=None, ref_step=None, n_threads=0,
            verbose=False, time_aligned=True) -> Comparison:
    """All metrics of ``traj`` against ``ref`` (see the module docstring).

    ``time_aligned=False`` is for a reference whose frames are not a trajectory (DFT on
    decorrelated geometries): only the RDFs are compared; EV/FV and MAE stay ``null``."""
    if traj.species != ref.species:
        raise EgraffError(f"{traj.path} has species {','.join(traj.species)} but the reference "
                          f"{ref.path} has {','.join(ref.species)}")
    ref_start = start if ref_start is None else ref_start
    ref_stop = stop if ref_stop is None else ref_stop
    ref_step = step if ref_step is None else ref_step
    sel, ref_sel = traj.frame_range(start, stop, step), ref.frame_range(ref_start, ref_stop,
                                                                         ref_step)
    f0, r0 = _first(traj, sel), _first(ref, ref_sel)
    if (f0.cell is None) != (r0.cell is None):
        raise EgraffError(f"{traj.path} and {ref.path}: one is periodic and the other is not; "
                          "their RDFs are normalised differently")
    if rmax is None:
        rmax = min(default_rmax(f0, traj, sel), default_rmax(r0, ref, ref_sel))
    rdf = RDF(traj, rmax=rmax, dr=dr, n_threads=n_threads, verbose=verbose)
    rdf = rdf.run(sel.start, sel.stop, sel.step).results
    rdf_ref = RDF(ref, rmax=rmax, dr=dr, n_threads=n_threads, verbose=verbose)
    rdf_ref = rdf_ref.run(ref_sel.start, ref_sel.stop, ref_sel.step).results
    pairs = [k for k in rdf_ref.rdf if k in rdf.rdf]
    out = {
        "wf": metrics.wright_factor(rdf.rdf["total"], rdf_ref.rdf["total"]),
        "wf_sqrt": metrics.wright_factor_sqrt(rdf.rdf["total"], rdf_ref.rdf["total"]),
        "jsd": metrics.jensen_shannon(rdf.rdf["total"], rdf_ref.rdf["total"]),
        "wf_pairs": {k: metrics.wright_factor(rdf.rdf[k], rdf_ref.rdf[k])
                     for k in pairs if k != "total"},
        "wf_sqrt_pairs": {k: metrics.wright_factor_sqrt(rdf.rdf[k], rdf_ref.rdf[k])
                          for k in pairs if k != "total"},
        "jsd_pairs": {k: _jsd_or_none(rdf.rdf[k], rdf_ref.rdf[k])
                      for k in pairs if k != "total"},
    }
    if time_aligned:
        out.update(_dynamics(traj, ref, sel, ref_sel))
    else:
        out.update(_no_dynamics(sel, ref_sel, 0))
        out["frames_missing"] = {"traj": 0, "ref": 0}
        out["notes"].append("EV/FV and MAE not computed: the reference frames are not a "
                            "trajectory, so nothing is time-aligned")
    out.update({
        "trajectory": str(traj.path), "reference": str(ref.path),
        "n_atoms": traj.n_atoms, "n_atoms_ref": ref.n_atoms,
        "n_frames_rdf": rdf.n_frames, "n_frames_rdf_ref": rdf_ref.n_frames,
        "rmax": rdf.rmax, "dr": rdf.dr, "rdf_normalisation": rdf.normalisation,
        "r": rdf.r, "rdf": rdf.rdf, "rdf_ref": rdf_ref.rdf,
    })
    return Comparison(**{_UNITS.get(k, k): v for k, v in out.items()})


def _jsd_or_none(p, q):
    try:
        return metrics.jensen_shannon(p, q)
    except ValueError:  # a pair with no distance inside rmax on one side
        return None


def _no_dynamics(sel, ref_sel, n) -> dict:
    return {"ev": None, "ev_std": None, "fv": None, "fv_std": None, "ev_t": None, "fv_t": None,
            "ev_referenced": None, "ev_referenced_std": None, "ev_referenced_t": None,
            "species_energies_ev": None,
            "e_mae": None, "e_mae_per_atom": None, "f_mae": None, "static": None,
            "n_frames_compared": 0,
            "frames_compared": {"traj": [sel.start, sel.start + (n - 1) * sel.step, sel.step],
                                "ref": [ref_sel.start, ref_sel.start + (n - 1) * ref_sel.step,
                                        ref_sel.step]} if n else None,
            "frames_missing": {"traj": max(0, len(ref_sel) - len(sel)),
                               "ref": max(0, len(sel) - len(ref_sel))},
            "notes": []}


def _dynamics(traj, ref, sel, ref_sel) -> dict:
    n = min(len(sel), len(ref_sel))
    out = _no_dynamics(sel, ref_sel, n)
    if traj.symbols != ref.symbols:
        why = (f"atom counts differ ({traj.n_atoms} vs {ref.n_atoms})"
               if traj.n_atoms != ref.n_atoms else "the atoms are in a different order")
        out["notes"].append(f"EV/FV and MAE not computed: {why}")
        return out
    if out["frames_missing"]["traj"] or out["frames_missing"]["ref"]:
        out["notes"].append(f"compared the first {n} frames; {out['frames_missing']['traj']} "
                            f"reference frames have no trajectory frame and "
                            f"{out['frames_missing']['ref']} trajectory frames no reference frame")
    e, e_ref, fv_t, f_abs, max_dx = [], [], [], [], 0.0
    no_energy = no_forces = None
    frames = zip(traj.frames(sel.start, sel.stop, sel.step),
                 ref.frames(ref_sel.start, ref_sel.stop, ref_sel.step))
    for fr, rf in frames:
        if fr.energy is None or rf.energy is None:
            if no_energy is None:
                no_energy = (traj.path, fr.index) if fr.energy is None else (ref.path, rf.index)
        else:
            e.append(fr.energy)
            e_ref.append(rf.energy)
        if fr.forces is None or rf.forces is None:
            if no_forces is None:
                no_forces = (traj.path, fr.index) if fr.forces is None else (ref.path, rf.index)
        else:
            fv_t.append(float(metrics.force_violation(fr.forces, rf.forces)))
            f_abs.append(float(np.mean(np.abs(fr.forces - rf.forces))))
        max_dx = max(max_dx, _max_displacement(fr, rf))
    out["n_frames_compared"] = n
    out["static"] = bool(max_dx < STATIC_TOLERANCE)
    if no_energy:
        out["notes"].append(f"EV not computed: no energy in frame {no_energy[1]} of "
                            f"{no_energy[0]}")
    else:
        ev_t = metrics.energy_violation(e, e_ref)
        out.update(ev=metrics.geometric_mean(ev_t), ev_std=float(np.std(ev_t)), ev_t=ev_t)
        species = sorted(set(ref.symbols))
        n_s = np.array([ref.symbols.count(s) for s in species], dtype=float)
        e_s = metrics.species_energies(np.tile(n_s, (len(e_ref), 1)), e_ref)
        zero = float(n_s @ e_s)
        ev_r = metrics.energy_violation(np.asarray(e) - zero, np.asarray(e_ref) - zero)
        out.update(ev_referenced=metrics.geometric_mean(ev_r),
                   ev_referenced_std=float(np.std(ev_r)), ev_referenced_t=ev_r,
                   species_energies_ev=dict(zip(species, map(float, e_s))))
        out["e_mae"] = metrics.mae(e, e_ref)
        out["e_mae_per_atom"] = out["e_mae"] / traj.n_atoms
    if no_forces:
        out["notes"].append(f"FV not computed: no forces in frame {no_forces[1]} of "
                            f"{no_forces[0]}")
    else:
        out.update(fv=metrics.geometric_mean(fv_t), fv_std=float(np.std(fv_t)),
                   fv_t=np.array(fv_t), f_mae=float(np.mean(f_abs)))
    if not out["static"]:
        out["notes"].append("positions differ between the compared frames: the MAEs are "
                            "differences along two trajectories, not the model's static error")
    return out


def _max_displacement(fr, rf) -> float:
    # minimum image, so that wrapped and unwrapped coordinates of one frame agree
    d = fr.positions - rf.positions
    return float(np.abs(minimum_image(d, rf.cell if fr.cell is not None else None)).max())
