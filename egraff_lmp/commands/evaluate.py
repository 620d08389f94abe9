"""``egraff-lmp evaluate``: the study's protocol for models x datasets, and its report."""

from __future__ import annotations

import os

from ..errors import EgraffError


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="the study's whole protocol: tables, plots, report",
                       description="For each model x dataset of CONFIG.yaml: static errors on "
                       "the test frames, K NVT simulations from reference frames, WF/JSD, "
                       "EV/FV, stability and timing; writes REPORTDIR/report.md, report.html, "
                       "metrics.json, metrics.csv and plots. Running it again resumes.")
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("-o", "--output", metavar="REPORTDIR", required=True)
    p.add_argument("--runs", type=int, metavar="K", help="simulations per model and dataset")
    p.add_argument("--steps", type=int, metavar="N", help="MD steps per simulation")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="simulations at once on this machine (concurrent.futures)")
    g.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="run the simulations on a Dask distributed cluster")
    g.add_argument("--slurm", action="store_true",
                   help="write a Slurm job-array script for the simulations and stop")
    p.add_argument("--readme", metavar="FILE",
                   help="also write the report's tables into FILE between "
                   "<!-- evaluate:start --> and <!-- evaluate:end --> markers")
    p.add_argument("--readme-section", metavar="NAME",
                   help="with --readme: the markers <!-- evaluate:start NAME --> and "
                   "<!-- evaluate:end NAME --> (several evaluations in one README)")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..evaluate import evaluate, main_log

    if args.jobs < 1:
        raise EgraffError(f"--jobs must be at least 1, got {args.jobs}")
    if args.readme:
        from ..evaluate.report import markers

        MARK_START, MARK_END = markers(args.readme_section)  # noqa: N806
        text = open(args.readme).read() if os.path.isfile(args.readme) else ""
        if MARK_START not in text or MARK_END not in text:
            raise EgraffError(f"{args.readme}: no {MARK_START} ... {MARK_END} markers to fill")
    evaluate(args.config, args.output, args.runs, args.steps, args.jobs, args.dask_scheduler,
             args.slurm, log=main_log)
    if args.readme and not args.slurm:
        from pathlib import Path

        from ..evaluate.report import splice_tables

        splice_tables(Path(args.output) / "report.md", Path(args.readme),
                      args.readme_section)
        main_log(f"wrote the tables into {args.readme}")
    return 0
