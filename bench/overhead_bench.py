"""Where does a LAMMPS step's time go? (issue 4: plugin ≈ 1.5–2.2× bare at 5,400 atoms)

In ONE process, interleaved, on the same atoms: a plugin MD step (``run 1``), the bare
artifact call (forward+backward) on LAMMPS' current positions, and a plain ``run 1`` with
``pair_style zero`` of the same cutoff (LAMMPS' own integration, neighbour lists and
communication without any model). Then the bare call again in a fresh process that never
loaded LAMMPS. If the in-process bare call is as slow as the plugin step, the overhead is
the process (threads, allocator, OpenMP runtimes), not the plugin.

    python bench/overhead_bench.py [--model inputs/models/gete-allegro.egraff.pt]
                                   [--rep 3] [--reps 7] [--threads 1] [--chunks 0 512]

``--chunks``: one LAMMPS instance per ``pair_style egraff ARTIFACT chunk N`` value, stepped
in turn (strictly local models are evaluated in spatial chunks of about N centres; 0: one
call for all atoms).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "inputs" / "gete" / "gete_start.data"

BARE_ALONE = """
import json, sys, time, numpy as np, torch
sys.path.insert(0, {root!r})
from ase.io import read
from egraff_lmp.calculator import DeployedCalculator
torch.set_num_threads({threads})
a = read({data!r}, format="lammps-data", atom_style="atomic").repeat({rep})
calc = DeployedCalculator({model!r})
ei, sh = calc.neighbours(a)
types = calc._types(a)
pos = torch.from_numpy(a.positions.copy())
out = []
for k in range({reps} + 2):
    t0 = time.perf_counter()
    calc.artifact(pos, types, ei, sh, len(a), True)
    out.append(time.perf_counter() - t0)
print(json.dumps({{"ms": 1000 * float(np.median(out[2:])), "edges": int(ei.shape[1])}}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "inputs/models/gete-allegro.egraff.pt"))
    ap.add_argument("--rep", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunks", type=int, nargs="+", default=[0, 512])
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch
    from ase import Atoms

    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.lammps.env import start_lammps
    from egraff_lmp.lammps.plugin import plugin_path

    torch.set_num_threads(args.threads)
    calc = DeployedCalculator(args.model)
    lmps = {}
    for chunk in args.chunks:
        lmp = start_lammps(["-nocite", "-screen", "none", "-log", "none"])
        lmp.commands_list([
            f"plugin load {plugin_path()}", "units metal", "atom_style atomic",
            "atom_modify map array", f"read_data {DATA}",
            f"replicate {args.rep} {args.rep} {args.rep}",
            f"pair_style egraff {args.model} chunk {chunk}", "pair_coeff * * Ge Te",
            "velocity all create 920 4928 mom yes rot yes dist gaussian",
            "timestep 0.001", "fix nve all nve", "thermo 0", "run 2"])
        lmps[chunk] = lmp
    n = lmp.get_natoms()
    symbols = ["Ge", "Te"]
    times = {f"plugin step, chunk {c}": [] for c in args.chunks}
    times.update({"bare, same process": [], "bare + neighbour list": []})
    for _ in range(args.reps):
        for chunk, lmp in lmps.items():
            t0 = time.perf_counter()
            lmp.command("run 1 pre no post no")
            times[f"plugin step, chunk {chunk}"].append(time.perf_counter() - t0)
        x = lmp.numpy.extract_atom("x")[:n].copy()
        ids = lmp.numpy.extract_atom("id")[:n]
        types = lmp.numpy.extract_atom("type")[:n]
        box = lmp.extract_box()
        cell = np.diag(np.array(box[1]) - np.array(box[0]))
        atoms = Atoms([symbols[t - 1] for t in types], positions=x, cell=cell, pbc=True)
        order = np.argsort(ids)
        atoms = atoms[order]
        t0 = time.perf_counter()
        ei, sh = calc.neighbours(atoms)
        t1 = time.perf_counter()
        calc.artifact(torch.from_numpy(atoms.positions.copy()), calc._types(atoms), ei, sh,
                      len(atoms), True)
        t2 = time.perf_counter()
        times["bare, same process"].append(t2 - t1)
        times["bare + neighbour list"].append(t2 - t0)
    for other in list(lmps.values())[:-1]:
        other.close()
    lmp.commands_list(["pair_style zero 5.0", "pair_coeff * *", "run 1"])
    zero = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        lmp.command("run 1 pre no post no")
        zero.append(time.perf_counter() - t0)
    times["LAMMPS alone (pair zero)"] = zero
    lmp.close()
    alone = subprocess.run(
        [sys.executable, "-c", BARE_ALONE.format(root=str(ROOT), data=str(DATA),
                                                 rep=args.rep, model=args.model,
                                                 reps=args.reps, threads=args.threads)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    res = json.loads(alone.stdout)
    bare_alone = res["ms"]
    print(f"{Path(args.model).name}: {n} atoms, {res['edges']} edges, {args.threads} thread(s), "
          f"median of {args.reps}")
    print(f"{'':28} {'ms':>9} {'÷ bare alone':>13}")
    for k, v in times.items():
        ms = 1000 * float(np.median(v))
        print(f"{k:28} {ms:9.1f} {ms / bare_alone:13.2f}")
    print(f"{'bare, fresh process':28} {bare_alone:9.1f} {1.0:13.2f}")


if __name__ == "__main__":
    main()
