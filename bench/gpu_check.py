"""The GPU path on a CUDA machine (not part of CI, which has no GPU).

1. ``DeployedCalculator(device="cuda")`` against the CPU on GeTe frames, shipped MACE and
   Allegro: energies, per-atom energies, forces, stress.
2. The LAMMPS plugin built against this machine's CUDA torch: ``pair_style egraff ...
   device cuda`` against ``device cpu`` (``run 0`` on a GeTe frame), modes images (1 rank)
   and staged (2 ranks, one GPU shared), shipped MACE and Allegro.
3. The main job's input, ``inputs/gete.in``, for --steps steps with device cuda and with
   device cpu through egraff-lmp's driver: ms/step of each.

Prints one JSON document; tolerances are the deploy checks' (1e-4 in float32).

    python bench/gpu_check.py [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GPU = "cuda"  # --device cpu checks this script itself on a machine without one
MODELS = {"mace": ROOT / "inputs/models/gete-mace.egraff.pt",
          "allegro": ROOT / "inputs/models/gete-allegro.egraff.pt"}


def python_parity() -> dict:
    from ase import Atoms

    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.io import read_trajectory

    ref = read_trajectory(ROOT / "inputs/gete/gete_test.npz")
    out = {}
    for name, path in MODELS.items():
        calcs = {d: DeployedCalculator(path, device=g) for d, g in (("cpu", "cpu"),
                                                                     ("cuda", GPU))}
        dev = {"energy_per_atom": 0.0, "atom_energies": 0.0, "forces": 0.0, "stress": 0.0}
        t = {"cpu": [], "cuda": []}
        for k in (0, 50, 100):
            res = {}
            for d, calc in calcs.items():
                atoms = Atoms(ref.symbols, positions=ref[k].positions, cell=ref[k].cell,
                              pbc=True)
                atoms.calc = calc
                t0 = time.perf_counter()
                res[d] = (atoms.get_potential_energy(), atoms.get_potential_energies(),
                          atoms.get_forces(), atoms.get_stress())
                t[d].append(time.perf_counter() - t0)
            a, b = res["cpu"], res["cuda"]
            dev["energy_per_atom"] = max(dev["energy_per_atom"], abs(a[0] - b[0]) / 200)
            for key, i in (("atom_energies", 1), ("forces", 2), ("stress", 3)):
                dev[key] = max(dev[key], float(np.abs(a[i] - b[i]).max()))
        out[name] = {"max_deviation_cuda_vs_cpu": dev,
                     "seconds_per_call": {d: float(np.median(v[1:])) for d, v in t.items()}}
    return out


INPUT = """
units metal
atom_style atomic
atom_modify map array
read_data {data}
plugin load {plugin}
pair_style egraff {artifact} mode {mode} device {device}
pair_coeff * * Ge Te
compute peatom all pe/atom
thermo_style custom step pe press pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.15g
run 0
"""


def lammps_parity(work: Path, plugin) -> dict:
    from egraff_lmp.lammps.env import start_lammps

    out = {}
    for name, path in MODELS.items():
        res = {}
        for device in ("cpu", GPU):
            lmp = start_lammps()
            text = INPUT.format(data=ROOT / "inputs/gete/gete_start.data", plugin=plugin,
                                artifact=path, mode="images", device=device)
            lmp.commands_string(text)
            f = np.array(lmp.numpy.extract_atom("f")[: lmp.get_natoms()])
            ids = np.array(lmp.numpy.extract_atom("id")[: lmp.get_natoms()])
            res[device] = (lmp.get_thermo("pe"), f[np.argsort(ids)],
                           [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz",
                                                        "pyz")])
            lmp.close()
        a, b = res["cpu"], res[GPU]
        out[name] = {"energy": abs(a[0] - b[0]), "forces": float(np.abs(a[1] - b[1]).max()),
                     "pressure_bar": float(np.abs(np.array(a[2]) - np.array(b[2])).max())}
    return out


def staged_two_ranks(work: Path, plugin) -> dict:
    """mode staged on 2 ranks, device cuda, against 1 rank cpu images: thermo of run 0."""
    import subprocess

    from egraff_lmp.io.lammps_log import read_thermo
    from egraff_lmp.lammps.env import library_env, mpiexec

    out = {}
    script = work / "staged.py"
    script.write_text(
        "import sys\nfrom egraff_lmp.lammps.env import start_lammps\n"
        "lmp = start_lammps(['-nocite', '-screen', 'none', '-log', sys.argv[2]])\n"
        "lmp.commands_string(open(sys.argv[1]).read())\nlmp.close()\n")
    for name, path in MODELS.items():
        thermo = {}
        for tag, ranks, mode, device in (("cpu1", 1, "images", "cpu"),
                                         ("cuda2", 2, "staged" if name == "mace" else "auto",
                                          GPU)):
            inp = work / f"in.{name}.{tag}"
            inp.write_text(INPUT.format(data=ROOT / "inputs/gete/gete_start.data",
                                        plugin=plugin, artifact=path, mode=mode,
                                        device=device))
            log = work / f"log.{name}.{tag}"
            r = subprocess.run([mpiexec(), "-n", str(ranks), sys.executable, str(script),
                                str(inp), str(log)], env=library_env(), capture_output=True,
                               text=True)
            if r.returncode:
                raise RuntimeError(r.stderr[-1500:])
            thermo[tag] = {k: v[0] for k, v in read_thermo(log)[-1].items()}
        out[name] = {k: abs(thermo["cpu1"][k] - thermo["cuda2"][k]) for k in thermo["cpu1"]}
    return out


def md_timing(work: Path, plugin, steps: int) -> dict:
    from egraff_lmp.run.driver import execute
    from egraff_lmp.run.engines import PluginEngine
    from egraff_lmp.run.watch import Watch

    out = {}
    for device in (GPU, "cpu"):
        rundir = work / f"gete-{device}"
        if rundir.exists():
            rundir = work / f"gete-{device}-2"
        rundir.mkdir()
        status = execute(ROOT / "inputs/gete.in", rundir, {"steps": steps},
                         PluginEngine(plugin, None, device), Watch(), progress=False)
        out[rundir.name] = {"ms_per_step": status.ms_per_step, "steps": status.steps_done,
                            "failed_at_step": status.failed_at_step,
                            "pair_mode": status.pair_mode}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    global GPU
    GPU = args.device
    import torch

    report = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    work = Path(tempfile.mkdtemp(prefix="egraff-gpu-"))
    steps = [("python_parity", python_parity)]
    for name, fn in steps:
        try:
            report[name] = fn()
        except Exception:
            report[name] = {"error": traceback.format_exc()[-2000:]}
        print(json.dumps({name: report[name]}, indent=1), flush=True)
    try:
        from egraff_lmp.lammps.plugin import plugin_path

        t0 = time.perf_counter()
        plugin = plugin_path(verbose=False)
        report["plugin_build_s"] = time.perf_counter() - t0
    except Exception:
        report["plugin"] = {"error": traceback.format_exc()[-3000:]}
        plugin = None
    if plugin is not None:
        for name, fn in (("lammps_parity", lambda: lammps_parity(work, plugin)),
                         ("staged_two_ranks_cuda", lambda: staged_two_ranks(work, plugin)),
                         ("gete_md", lambda: md_timing(work, plugin, args.steps))):
            try:
                report[name] = fn()
            except Exception:
                report[name] = {"error": traceback.format_exc()[-2000:]}
            print(json.dumps({name: report[name]}, indent=1, default=str), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
