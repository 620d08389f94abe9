"""Each shipped GeTe family three ways, side by side (issue 12's bench).

For the shipped GeTe4 MACE, Allegro, NequIP, TorchMD-Net ET, PaiNN and DimeNet++ on the
200-atom cell and its 3×3×3 replica
(5,400 atoms), one thread (OMP_NUM_THREADS=1), NVE from 920 K:

- plugin   LAMMPS with pair_style egraff (one rank; LAMMPS' loop time per step: neighbour
           lists, the model, the integrator, everything); "plugin opt" the same with
           `optimize yes` (TorchScript's graph optimisations on);
- bare     the artifact's own call: one forward + backward of the TorchScript module on the
           same configuration, through egraff-lmp's DeployedCalculator (the floor an engine
           adds to);
- study    the study's way: ASE Langevin (1 fs, 920 K) with the family's own ASE calculator
           (mace-torch's MACECalculator on the state file, nequip's NequIPCalculator on the
           package, TorchMD-Net's own forward with its own periodic neighbour list,
           SchNetPack's SpkCalculator; none for DimeNet++, whose PyG forward knows no cell).

Reported: ms/step, median of --repeats timings taken in turn, and the plugin's overhead over
the bare call. A 2-core machine is noisy: read the ratios of the same run.

    python bench/family_bench.py [--steps 10] [--large-steps 3] [--repeats 3] [--skip-large]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from staged_bench import run_lammps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "inputs" / "models"
FAMILIES = {"mace": ("gete-mace.egraff.pt", "gete-mace.mace-state.pt"),
            "allegro": ("gete-allegro.egraff.pt", "gete-allegro.nequip.zip"),
            "nequip": ("gete-nequip.egraff.pt", "gete-nequip.nequip.zip"),
            "torchmd": ("gete-torchmd.egraff.pt", "gete-torchmd.ckpt"),
            "painn": ("gete-painn.egraff.pt", "gete-painn.spk.pt"),
            "dimenet": ("gete-dimenet.egraff.pt", "gete-dimenet.pt")}


def atoms_of(rep):
    from egraff_lmp.io import read_trajectory

    ref = read_trajectory(ROOT / "inputs" / "gete" / "gete_test.npz")
    return ref[0].to_atoms(ref.symbols).repeat(rep)


def family_calculator(family, source):
    """The family's own ASE calculator; None where it has none for a periodic cell
    (DimeNet++: PyG's forward builds a non-periodic radius graph)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "dimenet":
            return None
        if family == "torchmd":
            from egraff_lmp.deploy.families.torchmd import TorchMDNetReference, _load_net

            return TorchMDNetReference(_load_net(source))
        if family == "painn":
            from egraff_lmp.deploy.families.schnetpack import _calculator

            return _calculator(source, 5.0)
        if family == "mace":
            from egraff_lmp.deploy.families.mace import _calculator, load_mace_state

            return _calculator(load_mace_state(source))
        from egraff_lmp.deploy.families.nequip import _calculator

        return _calculator(source)


def bare_ms(artifact, atoms, calls) -> float:
    from egraff_lmp.calculator import DeployedCalculator

    calc = DeployedCalculator(artifact)
    a = atoms.copy()
    a.calc = calc
    a.get_forces()  # warm-up (TorchScript specialises on the first calls)
    out = []
    for _ in range(calls):
        a.positions[0, 0] += 1e-4  # a new configuration each call
        t0 = time.perf_counter()
        a.get_forces()
        out.append(1000 * (time.perf_counter() - t0))
    return statistics.median(out)


def study_ms(family, source, atoms, steps) -> float:
    import numpy as np
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    a = atoms.copy()
    a.calc = family_calculator(family, source)
    if a.calc is None:
        return float("nan")
    MaxwellBoltzmannDistribution(a, temperature_K=920, rng=np.random.default_rng(1))
    dyn = Langevin(a, 1 * units.fs, temperature_K=920, friction=0.01 / units.fs)
    dyn.run(1)  # warm-up
    t0 = time.perf_counter()
    dyn.run(steps)
    return 1000 * (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--large-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help=f"comma-separated subset of {', '.join(FAMILIES)}")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    sizes = [((1, 1, 1), args.steps)] + ([] if args.skip_large else
                                         [((3, 3, 3), args.large_steps)])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'family':<8} {'atoms':>6} {'plugin':>10} {'plugin opt':>10} {'bare':>10} "
              f"{'study':>10} {'plugin/bare':>11} {'opt/bare':>9} {'study/plugin':>12}   "
              f"(ms/step, medians of {args.repeats})")
        for rep, steps in sizes:
            atoms = atoms_of(rep)
            for family in args.families.split(","):
                artifact, source = FAMILIES[family]
                art, src = MODELS / artifact, MODELS / source
                plugin, opt, bare, study = [], [], [], []
                for _ in range(args.repeats):  # in turn, so that noise hits all four
                    plugin.append(run_lammps(work, art, "auto", 1, 1, rep, steps)
                                  ["ms_per_step"])
                    opt.append(run_lammps(work, art, "auto", 1, 1, rep, steps,
                                          extra=" optimize yes")["ms_per_step"])
                    bare.append(bare_ms(art, atoms, steps))
                    study.append(study_ms(family, src, atoms, steps))
                p, o, b, s = (statistics.median(x) for x in (plugin, opt, bare, study))
                print(f"{family:<8} {len(atoms):>6} {p:>10.1f} {o:>10.1f} {b:>10.1f} "
                      f"{s:>10.1f} {p / b:>11.3f} {o / b:>9.3f} {s / p:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
