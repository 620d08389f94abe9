"""``egraff-lmp evaluate``: the study's protocol for models x datasets, and its report."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

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
    p.add_argument("--results", metavar="PAGE.md",
                   help="also write a whole results page of the docs (title, what was "
                   "evaluated, the report's tables), e.g. docs/results/NAME.md; add a new "
                   "page to mkdocs.yml's nav")
    # --readme spliced the tables between markers in a README; say what replaced it
    p.add_argument("--readme", help=argparse.SUPPRESS)
    p.add_argument("--readme-section", help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def main(args) -> int:
    from ..evaluate import evaluate, main_log

    if args.jobs < 1:
        raise EgraffError(f"--jobs must be at least 1, got {args.jobs}")
    if args.readme or args.readme_section:
        raise EgraffError("--readme is gone: --results docs/results/NAME.md writes a whole "
                          "results page instead of splicing tables into a README")
    if args.results:
        from ..evaluate.report import check_results_target

        check_results_target(Path(args.results))  # before the evaluation, not after it
    evaluate(args.config, args.output, args.runs, args.steps, args.jobs, args.dask_scheduler,
             args.slurm, log=main_log)
    if args.results and not args.slurm:
        from ..evaluate.evaldir import EvalDir
        from ..evaluate.report import write_results_page

        command = ["egraff-lmp", "evaluate", args.config, "-o", args.output]
        for flag, value in (("--runs", args.runs), ("--steps", args.steps)):
            if value is not None:
                command += [flag, str(value)]
        command += ["--results", args.results]
        write_results_page(EvalDir(args.output).report_md, Path(args.results),
                           shlex.join(command))
        main_log(f"wrote the results page {args.results}")
    return 0
