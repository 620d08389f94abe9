"""MD benchmark (issue 4): one artifact, one start, every way of running it, side by side.

For each model and size (the 200-atom GeTe4 cell, and replicated 3×3×3 = 5,400 atoms), each
measured in its own process so that thread settings hold:
- bare: the artifact's forward+backward alone (neighbour lists built beforehand), on MD
  frames;
- plugin: ``egraff-lmp run`` with the LAMMPS plugin (NVE; a 5-step warm-up run, then the
  timed run);
- callback: the same input with ``--engine callback`` (DeployedCalculator via fix external);
- ase: the same input with ``--engine ase`` (no LAMMPS; ASE's VelocityVerlet);
- study: the study's way, ASE Langevin + the family's own calculator (MACECalculator /
  NequIPCalculator);
at 1 rank × 1 thread, 1 rank × 2 threads (and 2 ranks × 1 thread for the plugin).
Prints ms/step, ms per atom-step and the ratios to bare. Medians; a 2-core machine is noisy.

    python bench/md_bench.py [--steps 20] [--large-steps 3] [--models gete-allegro gete-mace]
                             [--study-mace]   (adds MACE of the study's GeTe size, random weights)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"gete-mace": "gete-mace.mace-state.pt", "gete-allegro": "gete-allegro.nequip.zip"}

INPUT = """
variable model index {model}
units metal
atom_style atomic
read_data {data}
replicate {rep} {rep} {rep}
pair_style egraff ${{model}}
pair_coeff * * Ge Te
velocity all create 920 4928 mom yes rot yes dist gaussian
timestep 0.001
fix nve all nve
thermo 10
run 5
run {steps}
"""

BARE = """
import json, sys, time, numpy as np, torch
sys.path.insert(0, {root!r})
from ase import Atoms
from egraff_lmp.calculator import DeployedCalculator
d = np.load({ref!r})
calc = DeployedCalculator({artifact!r})
times = []
for k in range({steps} + 6):
    a = Atoms(numbers=d['atomic_numbers'], positions=d['pos'][k], cell=d['cell'], pbc=True)
    a = a.repeat({rep})
    ei, sh = calc.neighbours(a)
    types = calc._types(a)
    pos = torch.from_numpy(a.positions.copy())
    t0 = time.perf_counter()
    calc.artifact(pos, types, ei, sh, len(a), True)
    if k >= 6:
        times.append(time.perf_counter() - t0)
print(json.dumps({{"ms": 1000 * float(np.median(times))}}))
"""

STUDY = """
import json, sys, time, warnings, numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from egraff_lmp.deploy import load_source
d = np.load({ref!r})
a = Atoms(numbers=d['atomic_numbers'], positions=d['pos'][0], cell=d['cell'], pbc=True)
a = a.repeat({rep})
a.calc = load_source({source!r}).reference()
MaxwellBoltzmannDistribution(a, temperature_K=920, rng=np.random.default_rng(1))
md = Langevin(a, 1 * units.fs, temperature_K=920, friction=0.01, rng=np.random.default_rng(2))
md.run(4)
times = []
for _ in range({steps}):
    t0 = time.perf_counter()
    md.run(1)
    times.append(time.perf_counter() - t0)
print(json.dumps({{"ms": 1000 * float(np.median(times))}}))
"""


def _env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def python_ms(code, threads):
    r = subprocess.run([sys.executable, "-c", code], env=_env(threads), capture_output=True,
                       text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
    return json.loads(r.stdout.strip().splitlines()[-1])["ms"], None


def lammps_ms(model, rep, steps, engine, threads, ranks, work):
    inp = work / f"bench-{engine}-{rep}.in"
    inp.write_text(INPUT.format(model=model, data=ROOT / "inputs/gete/gete_start.data",
                                rep=rep, steps=steps))
    rundir = work / f"run-{Path(model).stem}-{engine}-{rep}-{threads}-{ranks}"
    cmd = [sys.executable, "-m", "egraff_lmp.cli", "run", str(inp), "-o", str(rundir),
           "--engine", engine, "--np", str(ranks), "--no-progress"]
    r = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
    rec = json.loads((rundir / "run.json").read_text())
    return rec["runs"][-1]["ms_per_step"], None


def study_size_mace(work: Path) -> tuple[Path, Path]:
    """MACE of the study's GeTe size (16 channels, max_L 2, r_max 8 Å, correlation 3,
    2 interactions), random weights, float32, deployed (timing only)."""
    code = f"""
import sys, numpy as np, torch
sys.path.insert(0, {str(ROOT)!r})
from e3nn import o3
from mace import modules
from egraff_lmp.deploy.families.mace import save_mace_state
torch.set_default_dtype(torch.float32)
blk = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
m = modules.ScaleShiftMACE(r_max=8.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
    interaction_cls=blk, interaction_cls_first=blk, num_interactions=2, num_elements=2,
    hidden_irreps=o3.Irreps("16x0e+16x1o+16x2e"), MLP_irreps=o3.Irreps("16x0e"),
    atomic_energies=np.array([-199.0, -199.0]), avg_num_neighbors=60.0,
    atomic_numbers=[32, 52], correlation=3, gate=torch.nn.functional.silu,
    radial_MLP=[64, 64, 64], radial_type="bessel", atomic_inter_scale=1.0,
    atomic_inter_shift=0.0)
save_mace_state(m, {str(work / "study.mace-state.pt")!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    state = work / "study.mace-state.pt"
    art = work / "study.egraff.pt"
    subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "deploy", str(state), "-o",
                    str(art)], check=True, capture_output=True)
    return art, state


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed steps at 200 atoms")
    ap.add_argument("--large-steps", type=int, default=3, help="timed steps at 5,400 atoms")
    ap.add_argument("--models", nargs="*", default=["gete-allegro", "gete-mace"])
    ap.add_argument("--study-mace", action="store_true")
    ap.add_argument("--sizes", nargs="*", type=int, default=[1, 3],
                    help="replication per axis (1: 200 atoms, 3: 5,400)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="egraff-mdbench-"))
    models = {m: (ROOT / "inputs/models" / f"{m}.egraff.pt", ROOT / "inputs/models" / SOURCES[m])
              for m in args.models}
    if args.study_mace:
        models["study-size MACE"] = study_size_mace(work)
    ref = str(ROOT / "inputs/gete/gete_test.npz")
    print(f"{'model':<16} {'atoms':>6} {'way':<9} {'ranks×threads':>13} {'ms/step':>9} "
          f"{'µs/atom-step':>12} {'÷ bare':>7}", flush=True)
    results = []
    for name, (art, source) in models.items():
        for rep in args.sizes:
            n = 200 * rep**3
            steps = args.steps if rep == 1 else args.large_steps
            for threads, ranks in ((1, 1), (2, 1), (1, 2)):
                rows = []
                if ranks == 1:
                    rows.append(("bare", *python_ms(BARE.format(
                        root=str(ROOT), ref=ref, artifact=str(art), steps=steps, rep=rep),
                        threads)))
                rows.append(("plugin", *lammps_ms(art, rep, steps, "plugin", threads, ranks,
                                                  work)))
                if ranks == 1:
                    rows.append(("callback", *lammps_ms(art, rep, steps, "callback", threads,
                                                        1, work)))
                    rows.append(("ase", *lammps_ms(art, rep, steps, "ase", threads, 1,
                                                   work)))
                    rows.append(("study", *python_ms(STUDY.format(
                        root=str(ROOT), ref=ref, source=str(source), steps=steps, rep=rep),
                        threads)))
                bare = next((ms for way, ms, _ in rows if way == "bare"), None)
                for way, ms, err in rows:
                    if ms is None:
                        print(f"{name:<16} {n:>6} {way:<9} {ranks}×{threads:<11} failed: "
                              f"{err}", flush=True)
                        continue
                    ratio = f"{ms / bare:.2f}" if bare else "-"
                    print(f"{name:<16} {n:>6} {way:<9} {ranks}×{threads:<11} {ms:>9.1f} "
                          f"{1000 * ms / n:>12.1f} {ratio:>7}", flush=True)
                    results.append({"model": name, "atoms": n, "way": way, "ranks": ranks,
                                    "threads": threads, "ms_per_step": ms})
    (work / "md_bench.json").write_text(json.dumps(results, indent=1))
    print(f"(raw numbers in {work / 'md_bench.json'})")


if __name__ == "__main__":
    main()
