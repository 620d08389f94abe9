"""Readers of what egraff-lmp wrote before the evaluation records (version 1).

Version 1 is ``metrics.json`` ``{"format": "egraff-lmp-evaluation", "version": 1}`` and the
caches of an evaluation directory without a header (``runs/.../evaluation.json``,
``static/``, ``reference/``, ``starts/LABEL/starts.json``): the same numbers under keys
without units, a model × dataset result flat (static errors, NVE drift and derived copies
beside the means). :func:`upgrade` turns each into the fields of its version-2 record; the
tables below are the renamings (``docs/evaluate.md`` names the main ones).
"""

from __future__ import annotations

#: version-1 key → version-2 field, shared by the records that carry these numbers
SERIES = {"wf": "wf_percent", "wf_sqrt": "wf_sqrt_percent", "jsd": "jsd_nats",
          "wf_pairs": "wf_pairs_percent", "jsd_pairs": "jsd_pairs_nats", "r": "r_a",
          "msd_t": "msd_t_fs", "msd": "msd_a2", "diffusivity": "diffusivity_a2_per_ps",
          "vdos_freq": "vdos_freq_thz", "vdos": "vdos_per_thz", "vdos_jsd": "vdos_jsd_nats",
          "adf": "adf_per_degree", "adf_jsd": "adf_jsd_nats"}
PROTOCOL = {"rdf_dr": "rdf_dr_a", "rdf_rmax": "rdf_rmax_a", "max_force": "max_force_ev_per_a",
            "bond_cutoff": "bond_cutoff_a"}
PLAN = {"starts": "start_frames", "window": "window_frames", "dump_every": "dump_every_steps"}
#: static errors: the cache's keys before they named their unit, and the cell's keys
STATIC = {"e_mae": "e_mae_mev", "e_mae_per_atom": "e_mae_mev_per_atom",
          "f_mae": "f_mae_mev_per_a", "ev_static": "ev", "fv_static": "fv",
          "ev_referenced_static": "ev_referenced"}
STATIC_KEYS = ("frames", "n_atoms", "e_mae_mev", "e_mae_mev_per_atom", "f_mae_mev_per_a",
               "ev_static", "fv_static", "ev_referenced_static")
CELL = {**SERIES, "wf_std": "wf_std_percent", "jsd_std": "jsd_std_nats",
        "temperature": "temperature_k", "engine": "engines"}
NVE = {"nve_drift_mev_per_atom_per_ps": "drift_mev_per_atom_per_ps",
       "nve_max_abs_dev_ev": "max_abs_dev_ev", "nve_steps_done": "steps_done",
       "nve_status": "status"}
#: version-1 keys with no field of their own in version 2 (they are properties now)
DERIVED = {"inference_s_per_1000_steps": "CellResult.inference_s_per_1000_steps",
           "nve_abs_drift": "NveDrift.abs_drift_mev_per_atom_per_ps"}
REFERENCE = {**SERIES, "bond_cutoff": "bond_cutoff_a", "angles": "angles_deg"}


def _renamed(d: dict, names: dict) -> dict:
    return {names.get(k, k): v for k, v in d.items()}


def protocol(d: dict) -> dict:
    return _renamed(d, PROTOCOL)


def plan(d: dict) -> dict:
    return _renamed(d, PLAN)


def static(d: dict) -> dict:
    return _renamed(d, STATIC)


def run_metrics(d: dict) -> dict:
    return _renamed(d, SERIES)


def reference(d: dict) -> dict:
    out = _renamed(d, REFERENCE)
    if isinstance(out.get("itself"), dict):
        out["itself"] = _renamed(out["itself"], SERIES)
    return out


def cell(d: dict) -> dict:
    """A version-1 result of a model on a dataset: the static errors and the NVE drift were
    keys beside the means (their notes were merged into the cell's, so the static errors'
    own notes stay empty here)."""
    out = _renamed({k: v for k, v in d.items() if k not in STATIC_KEYS and k not in NVE
                    and k not in DERIVED}, CELL)
    out["static"] = static({k: d[k] for k in STATIC_KEYS if k in d})
    out["nve"] = ({NVE[k]: d[k] for k in NVE if k in d}
                  if any(k in d for k in NVE) else None)
    if isinstance(out.get("curves"), dict):
        out["curves"] = _renamed(out["curves"], SERIES)
    return out


def evaluation(d: dict) -> dict:
    """metrics.json version 1: the datasets' plan keys sat beside their registry settings."""
    out = dict(d)
    out["protocol"] = protocol(d.get("protocol") or {})
    out["datasets"] = {}
    for label, x in (d.get("datasets") or {}).items():
        x = dict(x)
        p = {"timestep_fs": x.pop("timestep_fs", None),
             "dump_every_steps": x.pop("dump_every", None),
             "start_frames": x.pop("start_frames", []),
             "velocities": x.pop("velocities", "")}
        x["temperature_k"] = x.pop("temperature", None)
        x["plan"] = p
        out["datasets"][label] = x
    out["results"] = {m: {ds: cell(x) for ds, x in by.items()}
                      for m, by in (d.get("results") or {}).items()}
    out["reference"] = {ds: reference(x) for ds, x in (d.get("reference") or {}).items()}
    out["runs"] = [run_metrics(x) for x in d.get("runs") or []]
    return out


def itself_incomplete(d: dict, contiguous: bool) -> bool:
    """Whether a version-1 reference cache was written before the reference against itself
    had every number (then it is computed again)."""
    if d.get("format") is not None:
        return False
    have = set(d.get("itself") or {})
    need = {"adf_jsd", "wf_pairs"} | ({"vdos_jsd", "diffusivity"} if contiguous else set())
    return not need <= have


def upgrade(cls, d: dict) -> dict:
    """The version-2 fields of a version-1 record of type ``cls``."""
    from . import records

    readers = {records.Evaluation: evaluation, records.CellResult: cell,
               records.RunMetrics: run_metrics, records.StaticErrors: static,
               records.ReferenceAnalysis: reference, records.DatasetPlan: plan,
               records.Protocol: protocol}
    return readers[cls](d) if cls in readers else d
