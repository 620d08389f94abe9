"""The evaluation report: the study's tables (datasets as rows, models as columns, best of a
row in bold and second in italics), plots, ``report.md``, a self-contained ``report.html``
(plots inlined), ``metrics.json`` and ``metrics.csv`` (one row per model × dataset)."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import numpy as np

from ..files import atomic_path, write_json

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

# (title, key, unit, format, lower is better, source)
TABLES = [
    ("Table 1: static errors on the test frames", [
        ("E MAE", "e_mae_mev_per_atom", "meV/atom", ".3g", True),
        ("E MAE", "e_mae_mev", "meV", ".4g", True),
        ("F MAE", "f_mae_mev_per_a", "meV/Å", ".4g", True)]),
    ("Table 2: structure (RDF) versus the reference", [
        ("WF", "wf", "%", ".3g", True),
        ("JSD", "jsd", "", ".3g", True)]),
    ("Table 3: energy and force violation (geometric mean ± std over the runs)", [
        ("EV", "ev", "", ".3g", True),
        ("EV, energies from fitted per-species references", "ev_referenced", "", ".3g",
         True),
        ("FV", "fv", "", ".3g", True)]),
    ("Table 4: stability and cost", [
        ("stable runs", "stable_runs", "", "d", False),
        ("time to failure", "time_to_failure_ps", "ps", ".3g", False),
        ("inference", "inference_s_per_1000_steps", "s/1000 steps", ".3g", True),
        ("training", "training_time_s", "s", ".4g", True)]),
    ("Beyond the study: what tells models apart", [
        ("FV decorrelation", "t_decorrelation_fs", "fs", ".4g", False),
        ("NVE drift, absolute", "nve_abs_drift", "meV/atom/ps", ".3g", True),
        ("bond angles JSD", "adf_jsd", "", ".3g", True),
        ("VDOS JSD", "vdos_jsd", "", ".3g", True),
        ("static EV", "ev_static", "", ".3g", True),
        ("static EV, fitted per-species references", "ev_referenced_static", "", ".3g",
         True),
        ("static FV", "fv_static", "", ".3g", True)]),
]
STD = {"ev": "ev_std", "fv": "fv_std", "wf": "wf_std", "jsd": "jsd_std",
       "ev_referenced": "ev_referenced_std"}


def _fmt(v, spec):
    if v is None:
        return "–"
    if spec == "d":
        return str(int(v))
    return format(float(v), spec)


#: beside these, a column of the reference against itself (unranked)
ITSELF = ("wf", "jsd", "ev", "ev_referenced", "fv", "adf_jsd", "vdos_jsd")
ITSELF_COLUMN = "reference vs itself"


def table_rows(metrics, spec):
    """[(row label, [(text, rank)] per model)] with rank 1 best, 2 second, else 0; tables
    with a key of ``ITSELF`` get the reference against itself as a last, unranked column,
    and leave out rows with no number at all (EV/FV where the reference is not a
    trajectory: nothing is time-aligned there)."""
    models = list(metrics["models"])
    itself = any(key in ITSELF for _, key, *_ in spec)
    rows = []
    for ds in metrics["datasets"]:
        floor = (metrics.get("reference", {}).get(ds) or {}).get("itself") or {}
        for name, key, unit, fmt, lower in spec:
            vals = [metrics["results"].get(m, {}).get(ds, {}).get(key) for m in models]
            order = sorted({v for v in vals if v is not None}, reverse=not lower)
            cells = []
            for m, v in zip(models, vals):
                text = _fmt(v, fmt)
                std = metrics["results"].get(m, {}).get(ds, {}).get(STD.get(key, ""), None)
                if v is not None and std is not None:
                    text += f" ± {_fmt(std, fmt)}"
                rank = (order.index(v) + 1) if v is not None and len(order) > 1 else 0
                cells.append((text, rank if rank <= 2 else 0))
            if itself:
                cells.append((_fmt(floor.get(key), fmt), 0))
                if all(text == "–" for text, _ in cells):
                    continue
            label = f"{ds} — {name}" + (f" ({unit})" if unit else "")
            rows.append((label, cells))
    return (models + [ITSELF_COLUMN] if itself else models), rows


def _md_table(models, rows):
    out = ["| | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for label, cells in rows:
        out.append(f"| {label} | " + " | ".join(
            f"**{t}**" if r == 1 else f"*{t}*" if r == 2 else t for t, r in cells) + " |")
    return "\n".join(out)


def _html_table(models, rows):
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for label, cells in rows:
        tds = "".join(
            f"<td><b>{html.escape(t)}</b></td>" if r == 1 else
            f"<td><i>{html.escape(t)}</i></td>" if r == 2 else f"<td>{html.escape(t)}</td>"
            for t, r in cells)
        body.append(f"<tr><th>{html.escape(label)}</th>{tds}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


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


def plots(metrics, outdir: Path) -> dict[str, list[Path]]:
    """PNG files per dataset (RDF overlays, EV/FV curves, MSD, VDOS) and the scatter."""
    plt = _plt()
    figs: dict[str, list[Path]] = {}
    thr = metrics["protocol"]["decorrelation_fv"]
    for ds, ref in metrics["reference"].items():
        res = {m: metrics["results"][m][ds] for m in metrics["models"]
               if ds in metrics["results"].get(m, {})}
        figs[ds] = []
        keys = list(ref["rdf"])
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.6 * len(keys)), squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            ax.plot(ref["r"], ref["rdf"][key], color="k", lw=2, label="reference")
            for m, x in res.items():
                if x["curves"]["rdf"].get(key) is not None:
                    ax.plot(x["curves"]["r"], x["curves"]["rdf"][key], lw=1, label=m)
            density = ref.get("rdf_normalisation") == "pair-distance-density"
            ax.set_title(f"{ds}: {'pair-distance density' if density else 'RDF'} {key}")
            ax.set_xlabel("r (Å)")
            ax.set_ylabel("p(r) (1/Å)" if density else "g(r)")
            _legend(ax)
        figs[ds].append(_save(fig, outdir / "plots" / f"rdf_{ds}.png"))
        if any(x["curves"]["fv_t"] is not None for x in res.values()):
            fig, axes = plt.subplots(2, 1, figsize=(7, 5.2))
            for m, x in res.items():
                c = x["curves"]
                for ax, key in zip(axes, ("ev_t", "fv_t")):
                    if c[key] is not None:
                        ax.plot(np.arange(len(c[key])) * c["dt_frame_fs"], c[key], label=m)
            axes[1].axhline(thr, color="grey", ls="--", lw=1, label=f"FV = {thr}")
            for ax, name in zip(axes, ("EV(t)", "FV(t)")):
                ax.set_xlabel("t (fs)")
                ax.set_ylabel(name)
                ax.set_title(f"{ds}: {name}, mean over the runs")
                _legend(ax)
            figs[ds].append(_save(fig, outdir / "plots" / f"evfv_{ds}.png"))
        fig, axes = plt.subplots(3, 1, figsize=(7, 7.8))
        if ref.get("adf") is not None:
            axes[2].plot(ref["angles"], ref["adf"], color="k", lw=2, label="reference")
            for m, x in res.items():
                if x["curves"].get("adf") is not None:
                    axes[2].plot(ref["angles"], x["curves"]["adf"], label=m)
            from ..analysis.angles import cutoff_label

            rule = (ref.get("bond_rule") if isinstance(ref["bond_cutoff"], dict) else
                    f"within {cutoff_label(ref['bond_cutoff'])}")
            axes[2].set(xlabel="angle (degrees)", ylabel="density (1/degree)",
                        title=f"{ds}: bond angles (bonds {rule})")
            _legend(axes[2])
        if ref.get("msd") is not None:
            axes[0].plot(ref["msd_t"], ref["msd"], color="k", lw=2, label="reference")
        if ref.get("vdos") is not None:
            axes[1].plot(ref["vdos_freq"], ref["vdos"], color="k", lw=2, label="reference")
        for m, x in res.items():
            c = x["curves"]
            if c["msd"] is not None:
                axes[0].plot(c["msd_t"][:len(c["msd"])], c["msd"], label=m)
            if c["vdos"] is not None:
                axes[1].plot(c["vdos_freq"][:len(c["vdos"])], c["vdos"], label=m)
        internal = ref.get("molecule")
        axes[0].set(xlabel="lag time (fs)", ylabel="internal MSD (Å²)" if internal else
                    "MSD (Å²)", title=f"{ds}: " + ("internal MSD (centre of mass and "
                                                    "rotation removed)" if internal else "MSD"))
        extent = max([ref.get("vdos_extent_thz") or 0.0]
                     + [x.get("vdos_extent_thz") or 0.0 for x in res.values()])
        res_thz = ref.get("vdos_resolution_thz")
        run_res = [np.diff(x["curves"]["vdos_freq"][:2])[0] for x in res.values()
                   if x["curves"].get("vdos_freq") is not None
                   and len(x["curves"]["vdos_freq"]) > 1]
        axes[1].set(xlabel="frequency (THz)", ylabel="VDOS (1/THz)",
                    title=f"{ds}: VDOS" + (f" (resolution: reference {res_thz:.2g} THz"
                                           + (f", runs {max(run_res):.2g} THz" if run_res
                                              else "") + ")" if res_thz
                                           else " (the reference is not a trajectory)"))
        if extent:
            axes[1].set_xlim(0, 1.1 * extent)
        if ref.get("vdos") is None and all(x["curves"].get("vdos") is None
                                           for x in res.values()):
            axes[1].text(0.5, 0.5, "no VDOS: the reference is not a trajectory",
                         ha="center", va="center", transform=axes[1].transAxes)
            axes[1].set_xticks([])
            axes[1].set_yticks([])
        for ax in axes[:2]:
            _legend(ax)
        figs[ds].append(_save(fig, outdir / "plots" / f"msd_vdos_adf_{ds}.png"))
    pts = [(m, ds, x.get("f_mae_mev_per_a"), x.get("wf"), x.get("t_decorrelation_fs"))
           for m, by in metrics["results"].items() for ds, x in by.items()]
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
    figs["_scatter"] = [_save(fig, outdir / "plots" / "static_vs_dynamic.png")]
    return figs


# -- documents -----------------------------------------------------------------------------
SCALARS = ["e_mae_mev", "e_mae_mev_per_atom", "f_mae_mev_per_a", "wf", "wf_std", "jsd",
           "jsd_std", "ev", "ev_std", "ev_referenced", "ev_referenced_std", "fv", "fv_std",
           "ev_static", "fv_static", "ev_referenced_static",
           "t_decorrelation_fs",
           "stable_runs", "runs", "time_to_failure_ps", "ms_per_step",
           "inference_s_per_1000_steps", "training_time_s", "steps", "timestep_fs",
           "temperature"]


def write_csv(metrics, path: Path):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "dataset", *SCALARS])
        for m, by in metrics["results"].items():
            for ds, x in by.items():
                w.writerow([m, ds, *("" if x.get(k) is None else x.get(k) for k in SCALARS)])


def _extras(metrics):
    """Partial-RDF WF and diffusivities: rows per dataset × pair/species, with the reference
    against itself (its second stretch's) as a last, unranked column."""
    models = list(metrics["models"])
    rows = []
    for ds, ref in metrics["reference"].items():
        floor = ref.get("itself") or {}
        pairs = sorted({p for m in models
                        for p in metrics["results"].get(m, {}).get(ds, {}).get("wf_pairs", {})})
        for p in pairs:
            vals = [metrics["results"].get(m, {}).get(ds, {}).get("wf_pairs", {}).get(p)
                    for m in models]
            order = sorted({v for v in vals if v is not None})
            rows.append((f"{ds} — WF {p} (%)", [
                (_fmt(v, ".3g"), (order.index(v) + 1) if v is not None and len(order) > 1
                 and order.index(v) < 2 else 0) for v in vals]
                + [(_fmt((floor.get("wf_pairs") or {}).get(p), ".3g"), 0)]))
        for s, d_ref in (ref.get("diffusivity") or {}).items():
            vals = [metrics["results"].get(m, {}).get(ds, {}).get("diffusivity", {}).get(s)
                    for m in models]
            err = [abs(v - d_ref) if v is not None and d_ref is not None else None
                   for v in vals]
            order = sorted({e for e in err if e is not None})
            rows.append((f"{ds} — D {s} (Å²/ps; reference {_fmt(d_ref, '.3g')})", [
                (_fmt(v, ".3g"), (order.index(e) + 1) if e is not None and len(order) > 1
                 and order.index(e) < 2 else 0) for v, e in zip(vals, err)]
                + [(_fmt((floor.get("diffusivity") or {}).get(s), ".3g"), 0)]))
    return models + [ITSELF_COLUMN], rows


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
    written = (f"Written by `{command}` from the report's `report.md`, which also holds the "
               "plots and every run's stability notes; that command rewrites this page "
               "whole, so say what the numbers mean on a page of your own.")
    page = (f"{RESULTS_MARK}: rewritten whole by the next evaluation; do not edit -->\n"
            f"{head}\n\n{written}\n\n{tables}\n")
    with atomic_path(target) as tmp:
        tmp.write_text(page)


def write_report(metrics, outdir: Path) -> None:
    outdir = Path(outdir)
    figs = plots(metrics, outdir)
    write_json(outdir / "metrics.json", metrics)
    write_csv(metrics, outdir / "metrics.csv")
    thr = metrics["protocol"]["decorrelation_fv"]
    p = metrics["protocol"]
    intro = (f"{len(metrics['models'])} model(s) × {len(metrics['datasets'])} dataset(s); "
             f"{p['runs']} NVT runs of {p['steps']} steps each per model and dataset.")
    md = [f"# {metrics['title']}", "", intro, ""]
    hbody = [f"<h1>{html.escape(metrics['title'])}</h1><p>{html.escape(intro)}</p>"]
    for m, info in metrics["models"].items():
        per = info.get("trained_on_per_dataset") or {}
        seen = (info.get("trained_on") if set(per.values()) <= {info.get("trained_on")}
                else "; ".join(f"{ds}: {t}" for ds, t in per.items()))
        if seen:
            line = f"Model {m} was trained on {seen.rstrip('.')}."
            md += [f"- {line}"]
            hbody.append(f"<p>{html.escape(line)}</p>")
    for ds, d in metrics["datasets"].items():
        floor = (metrics.get("reference", {}).get(ds) or {}).get("itself") or {}
        n_ref = (metrics.get("reference", {}).get(ds) or {}).get("n_frames")
        frames = (f" Each simulation's RDF averages {floor.get('simulation_frames')} frames, "
                  f"the reference's up to {n_ref}; '{ITSELF_COLUMN}' compares "
                  f"{floor.get('how')}: WF {_fmt(floor.get('wf'), '.3g')} %, JSD "
                  f"{_fmt(floor.get('jsd'), '.3g')}, FV {_fmt(floor.get('fv'), '.3g')}, "
                  "what sampling alone gives." if floor.get("frames") else "")
        est = set(d.get("estimated") or [])
        spacing = d.get("frame_spacing_fs")
        spacing = ("" if spacing is None else f", reference frames {spacing:g} fs apart" +
                   (" (estimated from the data)" if "frame_spacing_fs" in est else ""))
        temp_src = (d.get("sources") or {}).get("temperature", "")
        temp_src = temp_src.removeprefix(f"{d['temperature']:g} K: ")
        ref = metrics.get("reference", {}).get(ds) or {}
        molecule = (f" Analysed as a molecule: pair-distance density p(r), internal MSD, "
                    f"bonds by {ref.get('bond_rule')}." if ref.get("molecule") else "")
        line = (f"**{ds}** ({d['name']}): {d['temperature']:g} K"
                + (" (estimated from the data)" if "temperature" in est else "")
                + (f" ({temp_src})" if temp_src and "temperature" not in est else "")
                + f", timestep {d['timestep_fs']:.4g} fs{spacing}, dump every "
                f"{d['dump_every']} steps; start frames {d['start_frames']}; velocities: "
                f"{d['velocities']}. {d['provenance'].rstrip('. ')}." + molecule + frames)
        md += [f"- {line}"]
        hbody.append(f"<p>{html.escape(line.replace('**', ''))}</p>")
    tables = [(title, table_rows(metrics, spec)) for title, spec in TABLES]
    tables.append(("Beyond the study: partial RDFs and diffusivity (the reference's own over "
                   "a second stretch beside it)", _extras(metrics)))
    for title, (models, rows) in tables:
        md += ["", f"## {title}", "", _md_table(models, rows)]
        hbody.append(f"<h2>{html.escape(title)}</h2>{_html_table(models, rows)}")
        if title.startswith("Table 3"):
            md += ["", EXPLAINER.format(thr=thr)]
            hbody.append(f"<p>{html.escape(EXPLAINER.format(thr=thr))}</p>")
    md += ["", "## Stability", ""]
    hbody.append("<h2>Stability</h2><ul>")
    for m, by in metrics["results"].items():
        for ds, x in by.items():
            line = (f"{m} on {ds}: {x['stable_runs']}/{x['runs']} runs stable over "
                    f"{x['steps']} steps" + ("" if not x["notes"] else
                                            "; " + "; ".join(x["notes"])))
            md.append(f"- {line}")
            hbody.append(f"<li>{html.escape(line)}</li>")
    hbody.append("</ul>")
    if metrics["errors"]:
        md += ["", "## Errors", ""] + [f"- {e}" for e in metrics["errors"]]
        hbody.append("<h2>Errors</h2><ul>" + "".join(
            f"<li>{html.escape(e)}</li>" for e in metrics["errors"]) + "</ul>")
    md += ["", "## Plots", ""]
    hbody.append("<h2>Plots</h2>")
    for _, paths in figs.items():
        for path in paths:
            rel = path.relative_to(outdir)
            md.append(f"![{path.stem}]({rel.as_posix()})")
            data = base64.b64encode(path.read_bytes()).decode()
            hbody.append(f'<figure><img alt="{html.escape(path.stem)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>'
                         f"{html.escape(path.stem)}</figcaption></figure>")
    md.append("")
    with atomic_path(outdir / "report.md") as tmp:
        tmp.write_text("\n".join(md))
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:"
             "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:"
             "right}th{text-align:left}img{max-width:100%}")
    page = io.StringIO()
    page.write(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
               f"{html.escape(metrics['title'])}</title><style>{style}</style></head><body>")
    page.write("".join(hbody))
    page.write("</body></html>\n")
    with atomic_path(outdir / "report.html") as tmp:
        tmp.write_text(page.getvalue())
