"""The evaluation report: the study's tables (datasets as rows, models as columns, best of a
row in bold and second in italics), plots, ``report.md``, a self-contained ``report.html``
(plots inlined), ``metrics.json`` and ``metrics.csv`` (one row per model × dataset).

Everything is read from an :class:`~.records.Evaluation`; each table row names the
:class:`~.records.CellResult` field it shows (:class:`Row`); the report is a list of
:mod:`.sections`, written once (:func:`report_sections`) and rendered to Markdown and HTML."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_path
from .evaldir import EvalDir
from .records import Evaluation
from .sections import (
    Bullets,
    Cell,
    Figures,
    Notes,
    Paragraph,
    Section,
    Strong,
    Table,
    Text,
    html_page,
    markdown,
)

EXPLAINER = (
    "EV(t) and FV(t) compare the simulation with the reference frame by frame in time, so "
    "only where the reference is a trajectory. Both are chaotic trajectories: once they have "
    "decorrelated, FV(t) sits near 0.7 whatever the "
    "model (two stretches of one real AIMD run give FV ≈ 0.7; the study's Table 3 shows "
    "0.60–0.83 for every model). The study's numbers are reported as it defines them; what "
    "tells models apart is how long a simulation stays with the reference (the FV "
    "decorrelation time: the first time FV(t) exceeds {thr}) and EV/FV of the model on the "
    "reference frames themselves (static), both beside them. EV is not invariant under a "
    "shift of the energy zero: on total energies of -4e4 eV every model's EV is 1e-8-1e-10. "
    "The row 'EV, energies from fitted per-species references' is EV on E - sum_s n_s E_s, "
    "with E_s fitted to the compared reference frames by least squares (for one "
    "composition: the reference's mean energy), where it measures the error against the "
    "energy's fluctuation; the row 'EV' is the study's, on the files' energies.")

@dataclass(frozen=True)
class Row:
    """One row of a table per dataset: ``value`` names the :class:`CellResult` field (dotted
    through its records: ``static.f_mae_mev_per_a``), ``std`` the field of its spread over the
    runs (shown as ± beside it), ``itself`` the :class:`ReferenceFloor` field of the reference
    against itself (a last, unranked column of the tables with one)."""

    name: str
    value: str
    unit: str = ""
    fmt: str = ".3g"
    lower_is_better: bool = True
    std: str | None = None
    itself: str | None = None

    @property
    def label(self) -> str:
        return self.name + (f" ({self.unit})" if self.unit else "")


TABLES = [
    ("Table 1: static errors on the test frames", [
        Row("E MAE", "static.e_mae_mev_per_atom", "meV/atom", ".3g"),
        Row("E MAE", "static.e_mae_mev", "meV", ".4g"),
        Row("F MAE", "static.f_mae_mev_per_a", "meV/Å", ".4g")]),
    ("Table 2: structure (RDF) versus the reference", [
        Row("WF", "wf_percent", "%", std="wf_std_percent", itself="wf_percent"),
        Row("JSD", "jsd_nats", std="jsd_std_nats", itself="jsd_nats")]),
    ("Table 3: energy and force violation (geometric mean ± std over the runs)", [
        Row("EV", "ev", std="ev_std", itself="ev"),
        Row("EV, energies from fitted per-species references", "ev_referenced",
            std="ev_referenced_std", itself="ev_referenced"),
        Row("FV", "fv", std="fv_std", itself="fv")]),
    ("Table 4: stability and cost", [
        Row("stable runs", "stable_runs", fmt="d", lower_is_better=False),
        Row("time to failure", "time_to_failure_ps", "ps", lower_is_better=False),
        Row("inference", "inference_s_per_1000_steps", "s/1000 steps"),
        Row("training", "training_time_s", "s", ".4g")]),
    ("Beyond the study: what tells models apart", [
        Row("FV decorrelation", "t_decorrelation_fs", "fs", ".4g", lower_is_better=False),
        Row("NVE drift, absolute", "nve.abs_drift_mev_per_atom_per_ps", "meV/atom/ps"),
        Row("bond angles JSD", "adf_jsd_nats", itself="adf_jsd_nats"),
        Row("VDOS JSD", "vdos_jsd_nats", itself="vdos_jsd_nats"),
        Row("static EV", "static.ev"),
        Row("static EV, fitted per-species references", "static.ev_referenced"),
        Row("static FV", "static.fv")]),
]
EXTRAS_TITLE = ("Beyond the study: partial RDFs and diffusivity (the reference's own over a "
                "second stretch beside it)")


def field_value(record, path: str | None):
    """The field ``path`` (dotted: ``static.ev``) of ``record``; None where the record, or a
    record on the way, is missing."""
    value = record
    for name in (path.split(".") if path else [None]):
        if value is None or name is None:
            return None
        value = getattr(value, name)
    return value


def _fmt(v, spec):
    if v is None:
        return "–"
    if spec == "d":
        return str(int(v))
    return format(float(v), spec)


ITSELF_COLUMN = "reference vs itself"


def _ranks(values, lower_is_better=True) -> list[int]:
    """1 for the best of ``values``, 2 for the second, 0 otherwise (and where fewer than two
    differ, or a value is None)."""
    order = sorted({v for v in values if v is not None}, reverse=not lower_is_better)
    out = []
    for v in values:
        rank = (order.index(v) + 1) if v is not None and len(order) > 1 else 0
        out.append(rank if rank <= 2 else 0)
    return out


def table(ev: Evaluation, rows: list[Row]) -> Table:
    """Datasets × ``rows`` as rows, the models as columns (rank 1 best, 2 second); a table
    with a row of the reference against itself gets it as a last, unranked column, and
    leaves out rows with no number at all (EV/FV where the reference is not a trajectory:
    nothing is time-aligned there)."""
    models = list(ev.models)
    itself = any(r.itself for r in rows)
    out = []
    for ds in ev.datasets:
        ref = ev.reference.get(ds)
        floor = ref.itself if ref is not None else None
        for row in rows:
            cellres = [ev.cell(m, ds) for m in models]
            vals = [field_value(c, row.value) for c in cellres]
            cells = []
            for c, v, rank in zip(cellres, vals, _ranks(vals, row.lower_is_better)):
                text = _fmt(v, row.fmt)
                std = field_value(c, row.std)
                if v is not None and std is not None:
                    text += f" ± {_fmt(std, row.fmt)}"
                cells.append(Cell(text, rank))
            if itself:
                cells.append(Cell(_fmt(field_value(floor, row.itself), row.fmt)))
                if all(c.text == "–" for c in cells):
                    continue
            out.append((f"{ds} — {row.label}", cells))
    return Table(models + [ITSELF_COLUMN] if itself else models, out)


def extras_table(ev: Evaluation) -> Table:
    """Partial-RDF WF and diffusivities: rows per dataset × pair/species, with the reference
    against itself (its second stretch's) as a last, unranked column."""
    models = list(ev.models)
    rows = []
    for ds, ref in ev.reference.items():
        floor = ref.itself
        cells = [ev.cell(m, ds) for m in models]
        pairs = sorted({p for c in cells if c is not None for p in c.wf_pairs_percent})
        for p in pairs:
            vals = [c.wf_pairs_percent.get(p) if c is not None else None for c in cells]
            rows.append((f"{ds} — WF {p} (%)", [
                Cell(_fmt(v, ".3g"), rank) for v, rank in zip(vals, _ranks(vals))]
                + [Cell(_fmt((floor.wf_pairs_percent or {}).get(p), ".3g"))]))
        for s, d_ref in (ref.diffusivity_a2_per_ps or {}).items():
            vals = [c.diffusivity_a2_per_ps.get(s) if c is not None else None for c in cells]
            err = [abs(v - d_ref) if v is not None and d_ref is not None else None
                   for v in vals]
            rows.append((f"{ds} — D {s} (Å²/ps; reference {_fmt(d_ref, '.3g')})", [
                Cell(_fmt(v, ".3g"), rank) for v, rank in zip(vals, _ranks(err))]
                + [Cell(_fmt((floor.diffusivity_a2_per_ps or {}).get(s), ".3g"))]))
    return Table(models + [ITSELF_COLUMN], rows)


# -- plots ---------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(ax):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _save(fig, path: Path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)
    return path


def plots(ev: Evaluation, evaldir: EvalDir) -> dict[str, list[Path]]:
    """PNG files per dataset (RDF overlays, EV/FV curves, MSD, VDOS) and the scatter."""
    plt = _plt()
    figs: dict[str, list[Path]] = {}
    thr = ev.protocol.decorrelation_fv
    for ds, ref in ev.reference.items():
        res = {m: ev.results[m][ds] for m in ev.models if ds in ev.results.get(m, {})}
        figs[ds] = []
        keys = list(ref.rdf)
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            ax.plot(ref.r_a, ref.rdf[key], color="k", lw=2, label="reference")
            for m, x in res.items():
                if x.curves.rdf.get(key) is not None:
                    ax.plot(x.curves.r_a, x.curves.rdf[key], lw=1, label=m)
            density = ref.rdf_normalisation == "pair-distance-density"
            ax.set_title(f"{ds}: {'pair-distance density' if density else 'RDF'} {key}")
            ax.set_xlabel("r (Å)")
            ax.set_ylabel("p(r) (1/Å)" if density else "g(r)")
            _legend(ax)
        figs[ds].append(_save(fig, evaldir.plot(f"rdf_{ds}")))
        if any(x.curves.fv_t is not None for x in res.values()):
            fig, axes = plt.subplots(2, 1, figsize=(7, 5.2))
            for m, x in res.items():
                c = x.curves
                for ax, series in zip(axes, (c.ev_t, c.fv_t)):
                    if series is not None:
                        ax.plot(np.arange(len(series)) * c.dt_frame_fs, series, label=m)
            axes[1].axhline(thr, color="grey", ls="--", lw=1, label=f"FV = {thr}")
            for ax, name in zip(axes, ("EV(t)", "FV(t)")):
                ax.set_xlabel("t (fs)")
                ax.set_ylabel(name)
                ax.set_title(f"{ds}: {name}, mean over the runs")
                _legend(ax)
            figs[ds].append(_save(fig, evaldir.plot(f"evfv_{ds}")))
        fig, axes = plt.subplots(3, 1, figsize=(7, 7.8))
        if ref.adf_per_degree is not None:
            axes[2].plot(ref.angles_deg, ref.adf_per_degree, color="k", lw=2,
                         label="reference")
            for m, x in res.items():
                if x.curves.adf_per_degree is not None:
                    axes[2].plot(ref.angles_deg, x.curves.adf_per_degree, label=m)
            from ..analysis.angles import cutoff_label

            rule = (ref.bond_rule if isinstance(ref.bond_cutoff_a, dict) else
                    f"within {cutoff_label(ref.bond_cutoff_a)}")
            axes[2].set(xlabel="angle (degrees)", ylabel="density (1/degree)",
                        title=f"{ds}: bond angles (bonds {rule})")
            _legend(axes[2])
        if ref.msd_a2 is not None:
            axes[0].plot(ref.msd_t_fs, ref.msd_a2, color="k", lw=2, label="reference")
        if ref.vdos_per_thz is not None:
            axes[1].plot(ref.vdos_freq_thz, ref.vdos_per_thz, color="k", lw=2,
                         label="reference")
        for m, x in res.items():
            c = x.curves
            if c.msd_a2 is not None:
                axes[0].plot(c.msd_t_fs[:len(c.msd_a2)], c.msd_a2, label=m)
            if c.vdos_per_thz is not None:
                axes[1].plot(c.vdos_freq_thz[:len(c.vdos_per_thz)], c.vdos_per_thz, label=m)
        internal = ref.molecule
        axes[0].set(xlabel="lag time (fs)", ylabel="internal MSD (Å²)" if internal else
                    "MSD (Å²)", title=f"{ds}: " + ("internal MSD (centre of mass and "
                                                    "rotation removed)" if internal else "MSD"))
        extent = max([ref.vdos_extent_thz or 0.0]
                     + [x.vdos_extent_thz or 0.0 for x in res.values()])
        res_thz = ref.vdos_resolution_thz
        run_res = [np.diff(x.curves.vdos_freq_thz[:2])[0] for x in res.values()
                   if x.curves.vdos_freq_thz is not None and len(x.curves.vdos_freq_thz) > 1]
        axes[1].set(xlabel="frequency (THz)", ylabel="VDOS (1/THz)",
                    title=f"{ds}: VDOS" + (f" (resolution: reference {res_thz:.2g} THz"
                                           + (f", runs {max(run_res):.2g} THz" if run_res
                                              else "") + ")" if res_thz
                                           else " (the reference is not a trajectory)"))
        if extent:
            axes[1].set_xlim(0, 1.1 * extent)
        if ref.vdos_per_thz is None and all(x.curves.vdos_per_thz is None
                                            for x in res.values()):
            axes[1].text(0.5, 0.5, "no VDOS: the reference is not a trajectory",
                         ha="center", va="center", transform=axes[1].transAxes)
            axes[1].set_xticks([])
            axes[1].set_yticks([])
        for ax in axes[:2]:
            _legend(ax)
        figs[ds].append(_save(fig, evaldir.plot(f"msd_vdos_adf_{ds}")))
    for ds, w in ev.committee.items():
        figs.setdefault(ds, []).append(_save(committee_plot(plt, ds, w),
                                             evaldir.plot(f"committee_{ds}")))
    pts = [(m, ds, x.static.f_mae_mev_per_a, x.wf_percent, x.t_decorrelation_fs)
           for m, by in ev.results.items() for ds, x in by.items()]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for m, ds, f, wf, td in pts:
        if f is not None and wf is not None:
            axes[0].scatter(f, wf)
            axes[0].annotate(f"{m}/{ds}", (f, wf), fontsize=7)
        if f is not None and td is not None:
            axes[1].scatter(f, td)
            axes[1].annotate(f"{m}/{ds}", (f, td), fontsize=7)
    axes[0].set(xlabel="static F MAE (meV/Å)", ylabel="WF (%)", title="static vs structure")
    axes[1].set(xlabel="static F MAE (meV/Å)", ylabel="FV decorrelation (fs)",
                title="static vs dynamics")
    figs["_scatter"] = [_save(fig, evaldir.plot("static_vs_dynamic"))]
    return figs


COMMITTEE_TITLE = "Does the committee deviation warn?"


def committee_plot(plt, ds: str, w):
    """max_devi_f along every run with a committee; failures (x) where the watch stopped
    them, the stable runs' threshold dashed."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colours = {}
    for r in w.runs:
        first = r.model not in colours  # one legend entry per model
        c = colours.setdefault(r.model, f"C{len(colours)}")
        ax.plot(r.t_fs, r.max_devi_f_ev_per_a, color=c, lw=1, alpha=0.8,
                label=r.model if first else None)
        if not r.stable and r.failed_at_fs is not None and r.max_devi_f_ev_per_a:
            ax.plot([r.failed_at_fs], [r.max_devi_f_ev_per_a[-1]], "x", color=c, ms=8)
    if w.threshold_ev_per_a is not None:
        ax.axhline(w.threshold_ev_per_a, color="grey", ls="--", lw=1,
                   label=f"{w.percentile:g}th percentile of the stable runs")
    ax.set_yscale("log")
    ax.set(xlabel="t (fs)", ylabel="max_devi_f (eV/Å)",
           title=f"{ds}: committee force deviation along each run (x: stopped by the watch)")
    _legend(ax)
    return fig


def committee_section(ev: Evaluation) -> Section:
    """Does the committee deviation warn? Per dataset the threshold from the stable runs and,
    per failed run, the deviation before the failure and how far ahead it crossed it."""
    blocks = [Paragraph(
        "Models with a committee ran as pair_style egraff A0 A1 ... devi_every "
        f"{ev.protocol.devi_every}: the committee's max_devi_f (the largest over the atoms "
        "of the models' force spread, eV/Å) every that many steps. The threshold is the "
        "95th percentile of max_devi_f over every sample of the dataset's stable runs with a "
        "committee (pooled over the models); for each run stopped by the stability watch: "
        "the largest deviation in the last 50 fs before it, and how many fs before the watch "
        "a run would have been flagged at that threshold.")]
    for ds, w in ev.committee.items():
        thr = "–" if w.threshold_ev_per_a is None else f"{w.threshold_ev_per_a:.3g}"
        rows = []
        for r in w.runs:
            rows.append((f"{ds}: {r.model} run {r.k}", [
                Cell("stable" if r.stable else f"failed at {r.failed_at_fs:.0f} fs"
                     if r.failed_at_fs is not None else "failed"),
                Cell(_fmt(r.max_ev_per_a, ".3g")),
                Cell(_fmt(r.last_window_max_ev_per_a, ".3g")),
                Cell(_fmt(r.last_window_percentile, ".0f")),
                Cell(thr),
                Cell(_fmt(r.flagged_at_fs, ".0f") if not r.stable else "–"),
                Cell(_fmt(r.lead_fs, ".0f") if not r.stable else "–")]))
        blocks.append(Table(["status", "max devi_f (eV/Å)", "last 50 fs (eV/Å)",
                             "its percentile among the stable samples", "threshold (eV/Å)",
                             "flagged at (fs)", "ahead of the watch (fs)"], rows))
        blocks.append(Bullets([committee_verdict(ds, w)]))
    return Section(COMMITTEE_TITLE, blocks)


def committee_verdict(ds: str, w) -> str:
    """The answer in one sentence, with numbers."""
    failed = w.failed
    if not failed:
        return f"{ds}: no run failed, so there is nothing to warn of."
    if w.threshold_ev_per_a is None:
        return (f"{ds}: every run with a committee failed, so no threshold can be chosen on "
                "stable runs; the deviations before the failures are in the table.")
    flagged = [r for r in failed if r.lead_fs is not None]
    leads = sorted(r.lead_fs for r in flagged)
    text = (f"{ds}: {len(flagged)} of {len(failed)} failures crossed the stable runs' "
            f"threshold ({w.threshold_ev_per_a:.3g} eV/Å, from {w.stable_samples} samples of "
            f"{w.stable_runs} stable runs) before the watch stopped them")
    if leads:
        text += (f", {leads[0]:.0f}-{leads[-1]:.0f} fs ahead (median "
                 f"{float(np.median(leads)):.0f} fs)")
    last = sorted(r.last_window_max_ev_per_a for r in failed
                  if r.last_window_max_ev_per_a is not None)
    pct = sorted(r.last_window_percentile for r in failed
                 if r.last_window_percentile is not None)
    if last and pct:
        text += (f"; in their last {w.window_fs:g} fs the failing runs deviated "
                 f"{last[0]:.3g}-{last[-1]:.3g} eV/Å, the {pct[0]:.0f}th-{pct[-1]:.0f}th "
                 "percentile of the stable runs' samples")
    return text + "."


# -- documents -----------------------------------------------------------------------------
#: metrics.csv: one row per model × dataset, a column per field (dotted: of a nested record)
CSV_COLUMNS = [
    ("e_mae_mev", "static.e_mae_mev"), ("e_mae_mev_per_atom", "static.e_mae_mev_per_atom"),
    ("f_mae_mev_per_a", "static.f_mae_mev_per_a"), ("wf_percent", "wf_percent"),
    ("wf_std_percent", "wf_std_percent"), ("jsd_nats", "jsd_nats"),
    ("jsd_std_nats", "jsd_std_nats"), ("ev", "ev"), ("ev_std", "ev_std"),
    ("ev_referenced", "ev_referenced"), ("ev_referenced_std", "ev_referenced_std"),
    ("fv", "fv"), ("fv_std", "fv_std"), ("static_ev", "static.ev"),
    ("static_fv", "static.fv"), ("static_ev_referenced", "static.ev_referenced"),
    ("t_decorrelation_fs", "t_decorrelation_fs"), ("stable_runs", "stable_runs"),
    ("runs", "runs"), ("time_to_failure_ps", "time_to_failure_ps"),
    ("ms_per_step", "ms_per_step"), ("inference_s_per_1000_steps", "inference_s_per_1000_steps"),
    ("training_time_s", "training_time_s"), ("steps", "steps"), ("timestep_fs", "timestep_fs"),
    ("temperature_k", "temperature_k")]


def write_csv(ev: Evaluation, path: Path):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "dataset", *(name for name, _ in CSV_COLUMNS)])
        for m, by in ev.results.items():
            for ds, x in by.items():
                w.writerow([m, ds, *("" if field_value(x, path) is None
                                     else field_value(x, path) for _, path in CSV_COLUMNS)])


RESULTS_MARK = "<!-- written by egraff-lmp evaluate --results"


def check_results_target(target: Path) -> None:
    """Refuse, before an evaluation runs, a ``--results`` target that is not a results page:
    a directory, or an existing file without :data:`RESULTS_MARK` (a hand-written page, a
    README), which a whole-page write would destroy."""
    from ..errors import located

    target = Path(target)
    if target.is_dir():
        raise located(target, "is a directory; --results takes a page, e.g. "
                      "docs/results/NAME.md")
    if target.exists() and RESULTS_MARK not in target.read_text():
        raise located(target, "is not a results page (no '<!-- written by egraff-lmp "
                      "evaluate --results' line): it would be overwritten whole, so it is "
                      "left alone; name a new page or one --results wrote")


def write_results_page(report_md: Path, target: Path, command: str) -> None:
    """Write ``target`` whole, atomically: a results page of the docs site made of the
    report's title and what was evaluated (models, datasets), the ``command`` that wrote it
    and the report's tables (everything of ``report.md`` before its stability notes and
    plots, which stay in the report)."""
    from ..errors import located

    check_results_target(target)
    rep = Path(report_md).read_text()
    if "\n## Table 1" not in rep or "\n## Stability" not in rep:
        raise located(report_md, "has no tables to write a results page from")
    head = rep[:rep.index("\n## Table 1")].strip()
    tables = rep[rep.index("\n## Table 1"):rep.index("\n## Stability")].strip()
    mark = "\n## " + COMMITTEE_TITLE
    if mark in rep:  # the committee's answer belongs with the tables
        rest = rep[rep.index(mark) + 1:]
        end = rest.find("\n## ")
        tables += "\n\n" + (rest if end < 0 else rest[:end]).strip()
    written = (f"Written by `{command}` from the report's `report.md`, which also holds the "
               "plots and every run's stability notes; that command rewrites this page "
               "whole, so say what the numbers mean on a page of your own.")
    page = (f"{RESULTS_MARK}: rewritten whole by the next evaluation; do not edit -->\n"
            f"{head}\n\n{written}\n\n{tables}\n")
    with atomic_path(target) as tmp:
        tmp.write_text(page)


def _trained_on(m: str, entry) -> Text | None:
    per = entry.trained_on_per_dataset
    seen = (entry.trained_on if set(per.values()) <= {entry.trained_on}
            else "; ".join(f"{ds}: {t}" for ds, t in per.items()))
    return f"Model {m} was trained on {seen.rstrip('.')}." if seen else None


def _dataset_line(ev: Evaluation, ds: str) -> list[Text]:
    """What was evaluated on dataset ``ds``: temperature, timestep, frames, velocities,
    provenance, molecule analysis and the reference against itself."""
    d = ev.datasets[ds]
    ref = ev.reference.get(ds)
    floor = ref.itself if ref is not None else None
    frames = (f" Each simulation's RDF averages {floor.simulation_frames} frames, the "
              f"reference's up to {ref.n_frames}; '{ITSELF_COLUMN}' compares {floor.how}: WF "
              f"{_fmt(floor.wf_percent, '.3g')} %, JSD {_fmt(floor.jsd_nats, '.3g')}, FV "
              f"{_fmt(floor.fv, '.3g')}, what sampling alone gives."
              if floor is not None and floor.frames else "")
    est = set(d.estimated)
    spacing = d.frame_spacing_fs
    spacing = ("" if spacing is None else f", reference frames {spacing:g} fs apart" +
               (" (estimated from the data)" if "frame_spacing_fs" in est else ""))
    temp_src = d.sources.get("temperature", "").removeprefix(f"{d.temperature_k:g} K: ")
    molecule = (f" Analysed as a molecule: pair-distance density p(r), internal MSD, bonds by "
                f"{ref.bond_rule}." if ref is not None and ref.molecule else "")
    plan = d.plan
    return [Strong(ds), f" ({d.name}): {d.temperature_k:g} K"
            + (" (estimated from the data)" if "temperature" in est else "")
            + (f" ({temp_src})" if temp_src and "temperature" not in est else "")
            + f", timestep {plan.timestep_fs:.4g} fs{spacing}, dump every "
            f"{plan.dump_every_steps} steps; start frames {plan.start_frames}; velocities: "
            f"{plan.velocities}. {d.provenance.rstrip('. ')}." + molecule + frames]


def report_sections(ev: Evaluation, figs: dict[str, list[Path]], root: Path
                    ) -> list[Section]:
    """The whole report, once: what was evaluated, the tables, stability, errors, plots
    (``figs``, PNG files under ``root``)."""
    p = ev.protocol
    intro = (f"{len(ev.models)} model(s) × {len(ev.datasets)} dataset(s); {p.runs} NVT runs "
             f"of {p.steps} steps each per model and dataset.")
    what = [line for m, entry in ev.models.items()
            if (line := _trained_on(m, entry)) is not None]
    what += [_dataset_line(ev, ds) for ds in ev.datasets]
    out = [Section(ev.title, [Paragraph(intro), Notes(what)], level=1)]
    for title, rows in TABLES:
        blocks = [table(ev, rows)]
        if title.startswith("Table 3"):
            blocks.append(Paragraph(EXPLAINER.format(thr=p.decorrelation_fv)))
        out.append(Section(title, blocks))
    out.append(Section(EXTRAS_TITLE, [extras_table(ev)]))
    stability = [f"{m} on {ds}: {x.stable_runs}/{x.runs} runs stable over {x.steps} steps"
                 + ("" if not x.notes else "; " + "; ".join(x.notes))
                 for m, by in ev.results.items() for ds, x in by.items()]
    out.append(Section("Stability", [Bullets(stability)]))
    if ev.committee:
        out.append(committee_section(ev))
    if ev.errors:
        out.append(Section("Errors", [Bullets(list(ev.errors))]))
    out.append(Section("Plots", [Figures([f for paths in figs.values() for f in paths], root)]))
    return out


def write_report(ev: Evaluation, evaldir) -> None:
    """Plots, ``metrics.json``, ``metrics.csv``, ``report.md`` and ``report.html`` of the
    evaluation (every number from ``ev``)."""
    evaldir = evaldir if isinstance(evaldir, EvalDir) else EvalDir(evaldir)
    figs = plots(ev, evaldir)
    ev.save(evaldir.metrics_json)
    write_csv(ev, evaldir.metrics_csv)
    sections = report_sections(ev, figs, evaldir.root)
    with atomic_path(evaldir.report_md) as tmp:
        tmp.write_text(markdown(sections))
    with atomic_path(evaldir.report_html) as tmp:
        tmp.write_text(html_page(sections, ev.title))


def regenerate(outdir) -> Evaluation:
    """Write the report of an evaluation directory again from its ``metrics.json`` (also one
    an earlier egraff-lmp wrote, read through :mod:`.legacy`); nothing is recomputed."""
    evaldir = EvalDir(outdir)
    ev = Evaluation.load(evaldir.metrics_json)
    write_report(ev, evaldir)
    return ev
