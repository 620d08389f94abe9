"""Does a committee's deviation warn before a run fails?

A model entry with a ``committee`` (other models of the same species, e.g. the model
trained with other seeds) runs as ``pair_style egraff A0 A1 ... devi_every N``: every N
steps the committee's force deviation (deepmd-kit's ``max_devi_f``, eV/Å: the largest over
the atoms of sqrt(mean over models |F_i^m − ⟨F_i⟩|²)) goes to the run's
``model_devi.out`` (:func:`read_model_devi`). Per dataset, :func:`committee_warning` then
asks what the issue asked: the threshold is the 95th percentile of ``max_devi_f`` over every
sample of the stable runs (all the dataset's models with a committee, pooled: the
deviation is a force in eV/Å whichever model drives); for each failed run, the largest
deviation in the last 50 fs before the stability watch stopped it, and when the deviation
first crossed the threshold: how many fs ahead of the watch it would have flagged the
failure (None: it never crossed), and where the last-50-fs value lies among the stable
runs' samples (a percentile: whether failing runs deviate more than stable ones do).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .records import CommitteeWarning, DeviationRun

#: the columns of pair_style egraff's devi_file (deepmd-kit's model_devi.out)
COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f",
           "avg_devi_f", "devi_e")


def read_model_devi(path) -> dict[str, np.ndarray] | None:
    """The columns of a devi_file (None: no such file or no line in it); written with
    ``atomic``, also ``atomic``: every atom's devi_f per line [steps, atoms], by atom id."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = [line.split() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    width = max((len(r) for r in rows), default=0)
    rows = [r for r in rows if len(r) == width]  # a line cut short by a crash: left out
    if width < len(COLUMNS) or not rows:
        return None
    data = np.array(rows, dtype=float)
    out = {name: data[:, k] for k, name in enumerate(COLUMNS)}
    if width > len(COLUMNS):
        out["atomic"] = data[:, len(COLUMNS):]
    return out


def committee_warning(runs) -> CommitteeWarning | None:
    """The committee analysis of one dataset's runs (:class:`~.records.RunMetrics` with
    their ``devi_t_fs``/``max_devi_f_ev_per_a`` series; None: no run had a committee)."""
    runs = [r for r in runs if r.devi_t_fs]
    if not runs:
        return None
    stable = [r for r in runs if r.status != "failed"]
    pooled = np.concatenate([r.max_devi_f_ev_per_a for r in stable]) if stable else []
    out = CommitteeWarning(stable_runs=len(stable), stable_samples=len(pooled))
    if len(pooled):
        out.threshold_ev_per_a = float(np.percentile(pooled, out.percentile))
    for r in runs:
        t, d = np.asarray(r.devi_t_fs, float), np.asarray(r.max_devi_f_ev_per_a, float)
        one = DeviationRun(model=r.model, k=r.k, stable=r.status != "failed", samples=len(d),
                           max_ev_per_a=float(d.max()), t_fs=t.tolist(),
                           max_devi_f_ev_per_a=d.tolist())
        if not one.stable and r.failed_at_step is not None:
            t_fail = r.failed_at_step * r.timestep_fs
            one.failed_at_fs = float(t_fail)
            window = d[(t >= t_fail - out.window_fs) & (t <= t_fail)]
            one.last_window_max_ev_per_a = float(window.max()) if len(window) else None
            if len(pooled) and one.last_window_max_ev_per_a is not None:
                one.last_window_percentile = float(
                    100.0 * np.mean(pooled <= one.last_window_max_ev_per_a))
            if out.threshold_ev_per_a is not None:
                above = np.nonzero((d > out.threshold_ev_per_a) & (t <= t_fail))[0]
                if len(above):
                    one.flagged_at_fs = float(t[above[0]])
                    one.lead_fs = float(t_fail - t[above[0]])
        out.runs.append(one)
    return out
