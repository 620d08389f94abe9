"""Compiled stages vs TorchScript stages in LAMMPS (issue 18), interleaved runs.

For the shipped GeTe MACE and NequIP: the TorchScript artifact and its compiled package
(compiled into --cache once, with its stages) in pair_style egraff mode staged on 1 and 2
ranks and mode images on 1 rank, 200 atoms (--large: also the 3x3x3 replica, 5,400 atoms,
chunks of 512), one thread per rank, NVE from 920 K; ms/step (LAMMPS' loop time), median of
--repeats rounds, every configuration once per round.

    python bench/compiled_staged_bench.py [--families mace,nequip] [--steps 20]
                                          [--repeats 2] [--large] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from staged_bench import ROOT, run_lammps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", default="mace,nequip")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--cache", default="/tmp/egraff-compiled-bench")
    args = ap.parse_args()
    from egraff_lmp.deploy.compiled import compile_artifact

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cases = [("staged", 1, (1, 1, 1)), ("staged", 2, (1, 1, 1)), ("images", 1, (1, 1, 1))]
    if args.large:
        cases += [("staged", 1, (3, 3, 3)), ("staged", 2, (3, 3, 3)), ("images", 1, (3, 3, 3))]
    work = Path(tempfile.mkdtemp(prefix="compiled-staged-"))
    for fam in args.families.split(","):
        art = ROOT / f"inputs/models/gete-{fam}.egraff.pt"
        pkg = cache / f"gete-{fam}.egraff.pt2"
        if not pkg.exists():
            compile_artifact(art, output=pkg, data=ROOT / "inputs/gete/gete_test.npz")
        times = {}
        for _ in range(args.repeats):
            for mode, ranks, rep in cases:
                for kind, path in (("TorchScript", art), ("compiled", pkg)):
                    steps = args.steps if rep == (1, 1, 1) else max(3, args.steps // 4)
                    r = run_lammps(work, path, mode, ranks, 1, rep, steps, label=kind)
                    times.setdefault((mode, ranks, r["atoms"], kind), []).append(
                        r["ms_per_step"])
        print(f"{fam}: ms/step, median of {args.repeats} (rounds: ...)")
        for mode, ranks, rep in cases:
            atoms = 200 * rep[0] * rep[1] * rep[2]
            ts, co = (times[(mode, ranks, atoms, k)] for k in ("TorchScript", "compiled"))
            m_ts, m_co = statistics.median(ts), statistics.median(co)
            print(f"  {mode:7s} {ranks} rank(s) {atoms:5d} atoms: TorchScript {m_ts:8.1f} "
                  f"({', '.join(f'{t:.1f}' for t in ts)})  compiled {m_co:8.1f} "
                  f"({', '.join(f'{t:.1f}' for t in co)})  {m_ts / m_co:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
