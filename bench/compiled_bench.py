"""TorchScript artifact vs its compiled AOTInductor package, side by side (issue 18).

For the shipped GeTe4 models (every family by default): one call of the model (energy, forces and
virial: forward + backward) through DeployedCalculator on the 200-atom CPMD frame and on its
3x3x3 replica (5,400 atoms), one thread, TorchScript and compiled timed in turn; medians
of --repeats. Packages are compiled into --cache once (the compile time and the package's
size are printed). The resident memory of a process that loads one file and makes one call
(peak RSS, MB) is measured in a fresh process per file and size.

    OMP_NUM_THREADS=1 python bench/compiled_bench.py [--families allegro,nequip,mace,...]
        [--repeats 7] [--skip-large] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "inputs" / "models"


def frame():
    d = np.load(ROOT / "inputs/gete/gete_test.npz")
    return Atoms(numbers=d["atomic_numbers"], positions=d["pos"][0], cell=d["cell"], pbc=True)


def timed(calc, atoms) -> float:
    atoms = atoms.copy()
    calc.reset()  # else ASE returns the results of the same positions
    atoms.calc = calc
    t0 = time.perf_counter()
    atoms.get_forces()
    atoms.get_stress()
    return 1000 * (time.perf_counter() - t0)


_RSS = """
import resource, sys, numpy as np, torch
from ase import Atoms
torch.set_num_threads(1)
from egraff_lmp.calculator import DeployedCalculator
d = np.load(sys.argv[2])
a = Atoms(numbers=d["atomic_numbers"], positions=d["pos"][0], cell=d["cell"], pbc=True)
a = a.repeat([int(sys.argv[3])] * 3)
a.calc = DeployedCalculator(sys.argv[1])
a.get_forces(); a.get_stress()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss_mb(path, repeat: int) -> float:
    """Peak resident memory (MB) of a fresh process making one call with ``path``."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RSS, str(path),
                          str(ROOT / "inputs/gete/gete_test.npz"), str(repeat)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="allegro,nequip,mace,torchmd,painn,dimenet")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--cache", default="/tmp/egraff-compiled-bench")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.deploy.compiled import compile_artifact

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    sizes = {"200": frame()}
    if not args.skip_large:
        sizes["5400"] = frame().repeat((3, 3, 3))
    print(f"torch {torch.__version__}, 1 thread, median of {args.repeats} calls "
          "(energy+forces+virial), ms")
    print(f"{'model':8s} {'atoms':>6s} {'TorchScript':>12s} {'compiled':>10s} {'speed-up':>9s}"
          f" {'max|dF| eV/Å':>13s}")
    for fam in args.families.split(","):
        art = MODELS / f"gete-{fam}.egraff.pt"
        pkg = cache / f"gete-{fam}.egraff.pt2"
        if not pkg.exists():
            t0 = time.perf_counter()
            compile_artifact(art, output=pkg, data=ROOT / "inputs/gete/gete_test.npz")
            print(f"{fam}: compiled and checked in {time.perf_counter() - t0:.0f} s")
        print(f"{fam}: artifact {art.stat().st_size / 1e6:.2f} MB, package "
              f"{pkg.stat().st_size / 1e6:.2f} MB; peak RSS (MB) TorchScript/compiled: "
              + ", ".join(f"{label} atoms {peak_rss_mb(art, r):.0f}/{peak_rss_mb(pkg, r):.0f}"
                          for label, r in (("200", 1), ("5400", 3)) if label in sizes),
              flush=True)
        ts, co = DeployedCalculator(art), DeployedCalculator(pkg)
        for label, atoms in sizes.items():
            reps = args.repeats if label == "200" else max(3, args.repeats // 2)
            timed(ts, atoms), timed(co, atoms)  # warm-up
            t_ts, t_co = [], []
            for _ in range(reps):  # in turn, so that the machine's noise hits both
                t_ts.append(timed(ts, atoms))
                t_co.append(timed(co, atoms))
            a, b = atoms.copy(), atoms.copy()
            a.calc, b.calc = ts, co
            df = float(np.abs(a.get_forces() - b.get_forces()).max())
            m_ts, m_co = statistics.median(t_ts), statistics.median(t_co)
            print(f"{fam:8s} {label:>6s} {m_ts:12.1f} {m_co:10.1f} {m_ts / m_co:8.2f}x "
                  f"{df:13.1e}", flush=True)


if __name__ == "__main__":
    main()
