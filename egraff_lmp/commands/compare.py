"""``egraff-lmp compare``: a trajectory against a reference (WF, JSD, EV/FV, MAE)."""

from __future__ import annotations

import argparse
import sys

from .options import READER_FIELDS, open_trajectory, outputs, rdf_options, reader_options


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare a trajectory with a reference (WF, JSD, EV, FV)",
                       description="RDF Wright's factor and JSD, time-aligned energy/force "
                       "violations EV/FV and MAE of TRAJ against REF (EGraFFBench metrics).")
    p.add_argument("traj", metavar="TRAJ")
    p.add_argument("--ref", required=True, metavar="REF", help="reference trajectory")
    reader_options(p)
    reader_options(p, "ref-", "the reference (default: as for TRAJ)")
    rdf_options(p)
    g = p.add_argument_group("reference frames (default: as for TRAJ)")
    for name in ("start", "stop", "step"):
        g.add_argument(f"--ref-{name}", type=int)
    outputs(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from ..compare import compare
    from ..files import write_json

    traj = open_trajectory(args, args.traj)
    ref_args = argparse.Namespace(**{
        name: getattr(args, f"ref_{name}") if getattr(args, f"ref_{name}") is not None
        else getattr(args, name)
        for name in READER_FIELDS})
    if args.ref_format is None and args.format is not None:
        ref_args.format = None  # a different kind of file is the common case
    if args.ref_log is None:
        ref_args.log = None  # a log belongs to one run
    ref = open_trajectory(ref_args, args.ref)
    out = compare(traj, ref, rmax=args.rmax, dr=args.dr, start=args.start, stop=args.stop,
                  step=args.step, ref_start=args.ref_start, ref_stop=args.ref_stop,
                  ref_step=args.ref_step, n_threads=args.threads, verbose=args.progress)
    if args.json:
        write_json(args.json, out.to_dict())
    if args.plot:
        from ..plot import plot_comparison

        plot_comparison(out, args.plot)
    print_comparison(out)
    sys.stdout.flush()
    for note in out.notes:
        print(f"egraff-lmp: note: {note}", file=sys.stderr)
    return 0


def _fmt(x, spec=".4g"):
    return "-" if x is None else format(x, spec)


def print_comparison(c) -> None:
    """The readable table of a :class:`~egraff_lmp.compare.Comparison`."""
    print(f"{c.trajectory} vs reference {c.reference}")
    print(f"RDF: {c.n_frames_rdf} vs {c.n_frames_rdf_ref} frames, r_max {c.rmax_a:g} Å, "
          f"dr {c.dr_a:g} Å")
    print(f"{'pair':<8} {'WF (%)':>10} {'sqrt WF (%)':>12} {'JSD':>10}")
    print(f"{'total':<8} {_fmt(c.wf_percent):>10} {_fmt(c.wf_sqrt_percent):>12} "
          f"{_fmt(c.jsd_nats):>10}")
    for key in c.wf_pairs_percent:
        print(f"{key:<8} {_fmt(c.wf_pairs_percent[key]):>10} "
              f"{_fmt(c.wf_sqrt_pairs_percent[key]):>12} {_fmt(c.jsd_pairs_nats[key]):>10}")
    print(f"frames compared (time-aligned): {c.n_frames_compared}")
    print(f"{'EV (gm ± std)':<16} {_fmt(c.ev)} ± {_fmt(c.ev_std)}")
    print(f"{'FV (gm ± std)':<16} {_fmt(c.fv)} ± {_fmt(c.fv_std)}")
    if c.e_mae_ev is not None or c.f_mae_ev_per_a is not None:
        e = c.e_mae_ev_per_atom
        print(f"{'energy MAE':<16} {_fmt(c.e_mae_ev)} eV ({_fmt(e and e * 1000)} meV/atom)")
        print(f"{'force MAE':<16} {_fmt(c.f_mae_ev_per_a and c.f_mae_ev_per_a * 1000)} meV/Å"
              f"{'' if c.static else '  (along two trajectories, not static)'}")
