"""DeployedCalculator vs the family's own ASE calculator, same model, side by side (issue 3).

For each shipped model (inputs/models) and each size — the 200-atom GeTe4 cell and the same
cell replicated 2×2×3 (2,400 atoms) — times one energy+forces call of egraff-lmp's
``DeployedCalculator`` (artifact + vesin neighbour list) and of ``MACECalculator`` /
``NequIPCalculator`` (source model + their neighbour lists), on frames that change every
call (no caching), after warm-up calls. Prints medians (ms) and the ratio family/ours.

    python bench/deploy_bench.py [--calls 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egraff_lmp.calculator import DeployedCalculator  # noqa: E402
from egraff_lmp.deploy import load_source  # noqa: E402

MODELS = {"gete-mace": "gete-mace.mace-state.pt", "gete-allegro": "gete-allegro.nequip.zip"}


def frames(reps):
    d = np.load(ROOT / "inputs" / "gete" / "gete_test.npz")
    for k in range(len(d["pos"])):
        a = Atoms(numbers=d["atomic_numbers"], positions=d["pos"][k], cell=d["cell"],
                  pbc=True)
        yield a.repeat(reps)


def timed(calc, reps, calls, warmup=4):
    times = []
    for k, atoms in enumerate(frames(reps)):
        if k == calls + warmup:
            break
        atoms.calc = calc
        t0 = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"torch threads {args.threads}; median of {args.calls} calls after 4 warm-ups; "
          "energy+forces per call")
    print(f"{'model':<14} {'atoms':>6} {'egraff-lmp (ms)':>16} {'family (ms)':>12} "
          f"{'family/ours':>12}")
    for name in args.models:
        artifact = ROOT / "inputs" / "models" / f"{name}.egraff.pt"
        source = ROOT / "inputs" / "models" / MODELS[name]
        ours, family = DeployedCalculator(artifact), load_source(source).reference()
        for reps in ((1, 1, 1), (2, 2, 3)):
            n = 200 * int(np.prod(reps))
            t_ours = timed(ours, reps, args.calls)
            t_family = timed(family, reps, args.calls)
            print(f"{name:<14} {n:>6} {t_ours:>16.1f} {t_family:>12.1f} "
                  f"{t_family / t_ours:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
