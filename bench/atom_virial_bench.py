"""What do per-atom virials cost? A heat-flux run against a plain run (issue 20).

In ONE process, interleaved, on the same atoms and model: a plain NVE run, the same run
sampling ``compute heat/flux`` (``centroid/stress/atom``, hence pair_style egraff's
per-atom virials from the edge gradients) every step, and every 2 steps (as
inputs/gete-heatflux.in does). Blocks of ``--block`` steps in turn; medians of ``--reps``.

    python bench/atom_virial_bench.py [--models allegro,mace] [--rep 1 3] [--reps 7]
                                      [--block 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "inputs" / "gete" / "gete_start.data"

SAMPLING = {"plain": None, "heat flux every step": 1, "heat flux every 2 steps": 2}


def _lammps(model: Path, rep: int, every: int | None):
    from egraff_lmp.lammps.env import start_lammps
    from egraff_lmp.lammps.plugin import plugin_path

    lmp = start_lammps(["-nocite", "-screen", "none", "-log", "none"])
    lmp.commands_list([
        f"plugin load {plugin_path()}", "units metal", "atom_style atomic",
        "atom_modify map array", f"read_data {DATA}", f"replicate {rep} {rep} {rep}",
        f"pair_style egraff {model}", "pair_coeff * * Ge Te",
        "velocity all create 920 4928 mom yes rot yes dist gaussian",
        "timestep 0.001", "fix nve all nve", "thermo 0"])
    if every:
        lmp.commands_list([
            "compute ke all ke/atom", "compute pe all pe/atom",
            "compute s all centroid/stress/atom NULL virial",
            "compute flux all heat/flux ke pe s",
            f"fix hf all ave/time {every} 1 {every} c_flux[1] c_flux[2] c_flux[3]"])
    lmp.command("run 2")
    return lmp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="allegro,mace")
    ap.add_argument("--rep", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), blocks of {args.block} steps, median of {args.reps}")
    print(f"{'model':10} {'atoms':>6} {'sampling':26} {'ms/step':>9} {'÷ plain':>8}")
    for name in args.models.split(","):
        model = ROOT / "inputs" / "models" / f"gete-{name}.egraff.pt"
        for rep in args.rep:
            lmps = {k: _lammps(model, rep, every) for k, every in SAMPLING.items()}
            times = {k: [] for k in lmps}
            for _ in range(args.reps):
                for k, lmp in lmps.items():
                    t0 = time.perf_counter()
                    lmp.command(f"run {args.block} pre no post no")
                    times[k].append((time.perf_counter() - t0) / args.block)
            n = lmps["plain"].get_natoms()
            for lmp in lmps.values():
                lmp.close()
            plain = float(np.median(times["plain"]))
            for k, v in times.items():
                ms = float(np.median(v))
                print(f"{name:10} {n:6d} {k:26} {1000 * ms:9.1f} {ms / plain:8.2f}")


if __name__ == "__main__":
    main()
