"""Figures (matplotlib, Agg backend), written atomically as PNG."""

from __future__ import annotations

from .files import atomic_path


def _figure(nrows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, 1, figsize=(7, 3.2 * nrows), squeeze=False)
    return plt, fig, axes[:, 0]


def _save(plt, fig, path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def plot_rdf(r, rdf: dict, path, title="", normalisation="volume"):
    """Total and partial RDFs (one panel each) from ``analyze`` results."""
    plt, fig, axes = _figure(2 if len(rdf) > 1 else 1)
    axes[0].plot(r, rdf["total"], color="k")
    axes[0].set_title(f"{title} total".strip())
    if len(rdf) > 1:
        for key, g in rdf.items():
            if key != "total":
                axes[1].plot(r, g, label=key)
        axes[1].legend()
        axes[1].set_title("partial")
    ylabel = "g(r)" if normalisation == "volume" else "p(r) (1/Å)"
    for ax in axes:
        ax.set_xlabel("r (Å)")
        ax.set_ylabel(ylabel)
    _save(plt, fig, path)


def plot_comparison(result, path, label="trajectory", ref_label="reference"):
    """RDF overlay (total and partials) and, when present, EV(t)/FV(t) of a
    :class:`~egraff_lmp.compare.Comparison`."""
    pairs = [k for k in result.rdf_ref if k != "total" and k in result.rdf]
    has_t = result.fv_t is not None or result.ev_t is not None
    plt, fig, axes = _figure(1 + len(pairs) + has_t)
    r = result.r_a
    for ax, key in zip(axes, ["total"] + pairs):
        ax.plot(r, result.rdf_ref[key], color="k", lw=2, label=ref_label)
        ax.plot(r, result.rdf[key], color="tab:red", lw=1, label=label)
        wf, jsd = (result.wf_percent, result.jsd_nats) if key == "total" else (
            result.wf_pairs_percent[key], result.jsd_pairs_nats[key])
        jsd_text = "n/a" if jsd is None else f"{jsd:.3g}"
        ax.set_title(f"{key}: WF = {wf:.3g} %, JSD = {jsd_text}")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)" if result.rdf_normalisation == "volume" else "p(r) (1/Å)")
        ax.legend()
    if has_t:
        ax = axes[-1]
        for series, name in ((result.ev_t, "EV(t)"), (result.fv_t, "FV(t)")):
            if series is not None:
                ax.plot(series, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("compared frame")
        ax.set_ylabel("violation (log scale)")
        ax.legend()
    _save(plt, fig, path)
