"""``egraff-lmp run``: a LAMMPS input with one of the engines, then the comparison."""

from __future__ import annotations

from ..errors import EgraffError
from .choices import LazyChoices, pair_mode_names
from .compare import print_comparison


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a LAMMPS input with a deployed model and compare",
                       description="Run a LAMMPS input (any physical unit style, converted by the "
                       "plugin; pair_style egraff "
                       "ARTIFACT + pair_coeff * * ELEMENTS) with the LAMMPS plugin or the "
                       "callback engine, watch its stability, write RUNDIR (log.lammps, dumps, "
                       "run.json) and compare the dump ${rundir}/dump.lammpstrj with the "
                       "reference (metrics.json, compare.png).")
    p.add_argument("input", metavar="INPUT", nargs="?")
    p.add_argument("-o", "--output", metavar="RUNDIR",
                   help="run directory (default runs/INPUT-TIMESTAMP)")
    p.add_argument("--restart-every", type=int, default=0, metavar="N",
                   help="write RUNDIR/restart.<step> every N steps (for --resume)")
    p.add_argument("--resume", metavar="RUNDIR",
                   help="continue the run in RUNDIR from its last restart file")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="LAMMPS variable (like lmp -var), e.g. --var steps=200")
    p.add_argument("--engine", choices=["auto", "plugin", "callback", "ase"], default="auto",
                   help="plugin (pair_style egraff inside LAMMPS), callback (fix external "
                   "with an ASE calculator), ase (no LAMMPS: ASE integrators run the "
                   "input's essentials) or auto: plugin, else callback (default)")
    p.add_argument("--np", type=int, default=1, help="MPI ranks (plugin engine)")
    p.add_argument("--device", metavar="cpu|cuda|cuda:N",
                   help="where the model runs (default cpu; cuda: one GPU per rank)")
    p.add_argument("--pair-mode", choices=LazyChoices(pair_mode_names), metavar="MODE",
                   help="force the plugin's mode: %(choices)s (default auto: on one rank "
                        "staged where the artifact has stages and more than chunk N atoms "
                        "(default 512), else images; on several ranks staged where the "
                        "artifact has stages, else ghosts)")
    p.add_argument("--calculator", metavar="MODULE:FACTORY",
                   help="ASE calculator for the callback engine (any model)")
    p.add_argument("--ref", metavar="TRAJ",
                   help="reference trajectory (default: the input's 'variable reference')")
    g = p.add_argument_group("stability watch")
    g.add_argument("--check-every", type=int, default=10, help="steps between checks (10)")
    g.add_argument("--max-force", type=float, default=50.0, help="eV/Å (default 50)")
    g.add_argument("--max-devi-f", type=float, metavar="EV_PER_A",
                   help="stop when a committee's last max_devi_f (pair_style egraff A0 A1 ... "
                        "devi_every N) is above this, eV/Å")
    g.add_argument("--temp-factor", type=float, default=3.0,
                   help="stop above this factor × the target temperature (default 3)")
    g.add_argument("--max-temp", type=float, help="K; overrides --temp-factor")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress (a bar on a terminal, else a line every 10 %%)")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..run import RunSpec, Watch, resume, run

    if args.resume:
        rec = resume(args.resume, progress=not args.no_progress)
        print(f"{rec.rundir}: resumed at step {rec.resumed_from_step}, "
              f"{rec.result.steps_done} steps done with the {rec.engine} engine")
        if rec.metrics:
            print_comparison(rec.metrics)
        return 0
    if args.input is None:
        raise EgraffError("run needs an INPUT (or --resume RUNDIR)")
    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise EgraffError(f"--var {item}: expected NAME=VALUE")
        variables[name] = value
    spec = RunSpec(input=args.input, rundir=args.output, variables=variables,
                   engine=args.engine, np=args.np, calculator=args.calculator,
                   device=args.device, pair_mode=args.pair_mode,
                   watch=Watch(every=args.check_every, max_force=args.max_force,
                               temp_factor=args.temp_factor, max_temp=args.max_temp,
                               max_devi_f=args.max_devi_f),
                   restart_every=args.restart_every, ref=args.ref,
                   progress=not args.no_progress)
    rec = run(spec)
    result = rec.result
    speed = f", {result.ms_per_step:.1f} ms/step" if result.ms_per_step else ""
    mode = f", pair mode {result.pair_mode}" if result.pair_mode else ""
    print(f"{rec.rundir}: {result.steps_done} steps with the {rec.engine} engine "
          f"({rec.engine_reason}){mode}{speed}")
    if rec.metrics:
        print_comparison(rec.metrics)
    return 0
