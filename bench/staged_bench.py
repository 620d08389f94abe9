"""Message passing across LAMMPS ranks (issue 9): pair_style egraff's modes side by side.

For the shipped GeTe MACE (and, with --nequip, a NequIP of the study's GeTe kind: 4 layers,
l_max 2, 32 features, r_max 5 Å, float32, weights from one epoch on two frames), on the
200-atom GeTe4 cell and its 3×3×3 replica (5,400 atoms), with OMP_NUM_THREADS=1 per rank
unless said otherwise, each configuration a real LAMMPS process (NVE from 920 K):

- 1×1 images   one rank, ghosts folded onto their owners (today's one-rank path);
- 1×1 staged   one rank, the staged path (chunk 512: layers evaluated in chunks of ~512
               centres: the one-rank default above 512 atoms), and with chunk 0 (one call
               per layer);
- 1×2 images   one rank, two threads;
- 2×1 staged   two ranks, a ghost shell of r_max, features exchanged between layers;
- 2×1 ghosts   two ranks, the old deep shell of layers × r_max (one call);
plus weak scaling (2 ranks on twice the atoms) and the communication volume per layer at
10⁶ atoms on 100 ranks from the measured ghost density.

Reported: ms/step (LAMMPS' loop time, setup excluded) as the median of --repeats runs taken
in turn, speed relative to 1×1 images, µs per atom-step, ghost atoms per rank (LAMMPS'
Nghost statistics) and peak resident memory per rank (max over ranks, from GNU time around
each rank). A 2-core machine is noisy: read the ratios of interleaved runs.

    python bench/staged_bench.py [--steps 20] [--large-steps 5] [--repeats 3] [--nequip]
                                 [--plugin PATH] [--no-large]

``run_lammps`` takes another plugin build and extra environment variables, so that a
variant of the plugin can be timed against the installed one in interleaved runs (as for
issue 17's measurement of a recomputing backward pass, docs/plugin.md).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "inputs" / "gete" / "gete_start.data"

INPUT = """
units metal
atom_style atomic
atom_modify map array
read_data {data}
replicate {rx} {ry} {rz}
velocity all create 920 4928 mom yes rot yes dist gaussian
plugin load {plugin}
pair_style egraff {artifact} mode {mode} chunk {chunk}{extra}
pair_coeff * * Ge Te
timestep 0.001
fix 1 all nve
thermo 100
run {steps}
"""


def run_lammps(work: Path, artifact, mode, ranks, threads, rep, steps, chunk=512,
               extra="", plugin=None, env=None, label="") -> dict:
    """One LAMMPS run; ``plugin``: another build of the plugin (default the installed
    one), ``env``: extra environment variables, ``label``: a tag for its files."""
    from egraff_lmp.lammps.env import library_env, lmp_executable, mpiexec
    from egraff_lmp.lammps.plugin import plugin_path

    tag = (f"{Path(artifact).stem}-{mode}-{ranks}x{threads}-{'x'.join(map(str, rep))}-{chunk}"
           f"{extra.replace(' ', '_')}{label}")
    inp = work / f"in.{tag}"
    inp.write_text(INPUT.format(data=DATA, rx=rep[0], ry=rep[1], rz=rep[2],
                                plugin=plugin or plugin_path(), artifact=artifact, mode=mode,
                                chunk=chunk, steps=steps, extra=extra))
    env = {**library_env(), **(env or {})}
    env["OMP_NUM_THREADS"] = str(threads)
    times = work / f"time.{tag}"
    cmd = [mpiexec(), "-n", str(ranks), "/usr/bin/time", "-a", "-o", str(times), "-f",
           "maxrss_kb %M", lmp_executable(), "-in", str(inp), "-screen", "none", "-log",
           str(work / f"log.{tag}")]
    times.unlink(missing_ok=True)
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    log = (work / f"log.{tag}").read_text()
    if r.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{log[-2000:]}")
    loop = float(re.search(r"Loop time of ([\d.eE+-]+)", log).group(1))
    natoms = int(re.search(r"with (\d+) atoms", log.split("Loop time")[-1]).group(1))
    ghosts = [float(v) for v in re.search(r"Nghost:\s+(\S+) ave\s+(\S+) max\s+(\S+) min",
                                          log).groups()]
    rss = [int(v) / 1024 for v in re.findall(r"maxrss_kb (\d+)", times.read_text())]
    return {"ms_per_step": 1000 * loop / steps, "atoms": natoms, "ghosts_ave": ghosts[0],
            "ghosts_max": ghosts[1], "rss_mb": max(rss)}


def nequip_bench_model(work: Path) -> Path:
    """The NequIP of bench/configs/nequip_gete_bench.yaml, trained by nequip-train for one
    epoch on two GeTe frames and deployed (timing only)."""
    from egraff_lmp.deploy import deploy
    from egraff_lmp.deploy.training_data import write_nequip_npz
    from egraff_lmp.io import read_trajectory

    data = write_nequip_npz(read_trajectory(ROOT / "inputs/gete/gete_val.npz"),
                            work / "train.npz", range(0, 300, 100))
    subprocess.run(["nequip-train", "-cp", str(ROOT / "bench/configs"), "-cn",
                    "nequip_gete_bench", f"data.split_dataset.dataset.file_path={data}",
                    f"hydra.run.dir={work / 'nequip'}"], check=True, capture_output=True)
    return deploy(work / "nequip" / "last.ckpt", work / "nequip-gete.egraff.pt")


CONFIGS = [  # (label, mode, ranks, threads, chunk)
    ("1x1 images", "images", 1, 1, 512),
    ("1x1 staged (chunk 512)", "staged", 1, 1, 512),
    ("1x1 staged chunk 0", "staged", 1, 1, 0),
    ("1x2 images", "images", 1, 2, 512),
    ("2x1 staged (chunk 512)", "staged", 2, 1, 512),
    ("2x1 staged chunk 0", "staged", 2, 1, 0),
    ("2x1 ghosts", "ghosts", 2, 1, 512),
]


def measure(work, artifact, rep, steps, repeats, configs, plugin=None):
    runs = {c[0]: [] for c in configs}
    for _ in range(repeats):
        for label, mode, ranks, threads, chunk in configs:
            runs[label].append(run_lammps(work, artifact, mode, ranks, threads, rep, steps,
                                          chunk, plugin=plugin))
    out = {}
    for label, rs in runs.items():
        out[label] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        out[label]["all_ms"] = [round(r["ms_per_step"], 1) for r in rs]
    return out


def table(name, results):
    base = results["1x1 images"]
    lines = [f"\n{name}, {int(base['atoms'])} atoms (medians)",
             "| configuration | ms/step | speed vs 1x1 images | µs/atom-step (per rank-core) "
             "| ghosts/rank | peak RSS/rank MB | RSS vs 1x1 |",
             "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        cores = int(label[0]) * int(label[2])
        lines.append(f"| {label} | {r['ms_per_step']:.1f} | "
                     f"{base['ms_per_step'] / r['ms_per_step']:.2f}x | "
                     f"{1000 * r['ms_per_step'] * cores / r['atoms']:.0f} | "
                     f"{r['ghosts_ave']:.0f} | {r['rss_mb']:.0f} | "
                     f"{r['rss_mb'] / base['rss_mb']:.2f} |")
    return "\n".join(lines)


def comm_volume(artifact, ghosts_per_rank, atoms_per_rank, skin=2.0) -> str:
    """Bytes per layer per rank at 10⁶ atoms on 100 ranks, from the feature widths and the
    ghost count of a cubic sub-domain (density of GeTe4; shell r_max + skin, or the deep
    shell layers × r_max + skin), checked against the measured ghost count."""
    from egraff_lmp.deploy.artifact import read_metadata

    meta = read_metadata(artifact)
    rho = 200 / 19.1 ** 3  # atoms/Å³, the CPMD cell
    def shell(n, cut):
        side = (n / rho) ** (1 / 3)
        return rho * ((side + 2 * cut) ** 3 - side ** 3)
    r_max, layers = meta["r_max"], meta["num_layers"]
    model_here = shell(atoms_per_rank, r_max + skin)
    n = 10 ** 6 / 100
    one, deep = shell(n, r_max + skin), shell(n, layers * r_max + skin)
    widths = meta["stages"]["feature_widths"]
    lines = [f"\ncommunication at 10^6 atoms on 100 ranks ({n:.0f} atoms/rank, cubic "
             f"sub-domains): ghost shell r_max+skin {one:.0f} atoms/rank (deep shell "
             f"{deep:.0f}); the same estimate for the measured run gives {model_here:.0f} "
             f"ghosts/rank against {ghosts_per_rank:.0f} measured"]
    for k, w in enumerate(widths):
        if k == 0:
            lines.append(f"  layer 0: no exchange (features from the types), {w} numbers/atom")
            continue
        b = one * w * 8
        lines.append(f"  layer {k}: {w} numbers/atom -> forward {b / 1e6:.2f} MB + reverse "
                     f"{b / 1e6:.2f} MB per rank per step (doubles)")
    lines.append(f"  positions and forces (LAMMPS' own): {one * 3 * 8 / 1e6:.2f} MB each way")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="steps at 200 atoms")
    ap.add_argument("--large-steps", type=int, default=5, help="steps at 5,400 atoms")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nequip", action="store_true", help="add a NequIP of the study's size")
    ap.add_argument("--no-mace", action="store_true", help="skip the shipped MACE")
    ap.add_argument("--skip-small", nargs="*", default=[], metavar="LABEL",
                    help="configurations not run at 200 atoms")
    ap.add_argument("--skip-large", nargs="*", default=[], metavar="LABEL",
                    help="configurations not run at 5,400 atoms (e.g. '2x1 ghosts', which "
                         "for a 4-layer NequIP means a 22 Å ghost shell on each rank)")
    ap.add_argument("--no-large", action="store_true",
                    help="200 atoms only (no 5,400-atom tables, no weak scaling)")
    ap.add_argument("--plugin", help="this build of the plugin (default: the installed one)")
    ap.add_argument("--json", help="write all numbers here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="egraff-stagedbench-"))
    models = {} if args.no_mace else {
        "gete-mace (shipped, float32)": ROOT / "inputs/models/gete-mace.egraff.pt"}
    if args.nequip:
        models["nequip (study size, float32)"] = nequip_bench_model(work)
    everything = {}
    for name, art in models.items():
        small = measure(work, art, (1, 1, 1), args.steps, args.repeats,
                        [c for c in CONFIGS if c[0] not in args.skip_small], args.plugin)
        print(table(name, small), flush=True)
        if args.no_large:
            everything[name] = {"200": small}
            continue
        large = measure(work, art, (3, 3, 3), args.large_steps, args.repeats,
                        [c for c in CONFIGS if c[0] not in args.skip_large], args.plugin)
        print(table(name, large), flush=True)
        weak_cfg = [("1x1 auto", "auto", 1, 1, 512), ("2x1 auto", "auto", 2, 1, 512)]
        weak = {}
        for label, rep in (("200 -> 400", ((1, 1, 1), (2, 1, 1))),
                           ("5,400 -> 10,800", ((3, 3, 3), (6, 3, 3)))):
            steps = args.steps if rep[0] == (1, 1, 1) else args.large_steps
            one = measure(work, art, rep[0], steps, args.repeats, weak_cfg[:1],
                          args.plugin)["1x1 auto"]
            two = measure(work, art, rep[1], steps, args.repeats, weak_cfg[1:],
                          args.plugin)["2x1 auto"]
            weak[label] = (one, two)
        print(f"\n{name}: weak scaling, atoms per rank fixed, default mode (1 rank: images "
              "at 200 atoms, staged in chunks at 5,400; 2 ranks: staged)")
        print("| atoms | 1 rank ms/step | 2 ranks ms/step | efficiency |\n|---|---|---|---|")
        for label, (one, two) in weak.items():
            print(f"| {label} | {one['ms_per_step']:.1f} | {two['ms_per_step']:.1f} | "
                  f"{one['ms_per_step'] / two['ms_per_step']:.2f} |")
        two = large["2x1 staged (chunk 512)"]
        print(comm_volume(art, two["ghosts_ave"], two["atoms"] / 2))
        everything[name] = {"200": small, "5400": large,
                            "weak": {k: list(v) for k, v in weak.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))
    print(f"\n(logs in {work})", file=sys.stderr)


if __name__ == "__main__":
    main()
