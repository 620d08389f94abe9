"""Reproduce the shipped GeTe models: train, deploy, and measure their test-set errors.

    python inputs/models/reproduce.py [--only mace|allegro|...|painn|dimenet] [--epochs N]
                                      [--workdir DIR] [--seed N]

``--only nequip --seed 11`` trains a committee member: the same config with another seed,
shipped as ``gete-nequip-seed11.*`` (the committees of inputs/evaluate-committee.yaml).

1. Training data: every 2nd frame of the first 270 of the GeTe4 CPMD *val* split
   (inputs/gete/gete_val.npz, 135 frames; 15 held out at random for validation). The *test*
   split stays the reference trajectory, never seen in training.
2. Training with each family's own trainer and the configs beside this script:
   ``mace_run_train --config configs/mace_gete.yaml``, ``nequip-train -cp configs -cn
   allegro_gete``, ``nequip-train -cp configs -cn nequip_gete`` and ``torchmd-train --conf
   configs/torchmd_gete.yaml`` (through ``torchmd_train_atomref.py``, which gives its
   Atomref prior reference energies), SchNetPack's trainer for PaiNN (``train_painn.py
   --config configs/painn_gete.yaml``) and, since PyG has no trainer, a documented loop for
   DimeNet++ (``train_dimenet.py --config configs/dimenet_gete.yaml``).
3. ``egraff-lmp deploy`` (parity and symmetry checked on test frames) into
   ``inputs/models/*.egraff.pt``; the MACE source is also kept as config + state dict
   (``gete-mace.mace-state.pt``: pickled MACE models do not load across e3nn versions).
4. Test-set errors by egraff-lmp itself: ``egraff-lmp predict`` on all 300 test frames, then
   ``egraff-lmp compare PRED --ref TEST`` (static MAE), written to ``metrics.json`` and the
   table in README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from egraff_lmp.deploy.training_data import write_extxyz, write_nequip_npz  # noqa: E402
from egraff_lmp.io import read_trajectory  # noqa: E402

TRAIN_FRAMES = range(0, 270, 2)


def run(cmd, cwd):
    print("$", " ".join(map(str, cmd)), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True)
    return time.perf_counter() - t0


def train_mace(work: Path, epochs: int | None) -> tuple[Path, float]:
    from egraff_lmp.deploy.families.mace import load_pickled_model, save_mace_state

    work.mkdir(parents=True, exist_ok=True)
    write_extxyz(read_trajectory(ROOT / "inputs/gete/gete_val.npz"), work / "train.xyz",
                 TRAIN_FRAMES)
    cmd = [sys.executable, "-m", "mace.cli.run_train", "--config",
           HERE / "configs" / "mace_gete.yaml"]
    if epochs:
        cmd += ["--max_num_epochs", epochs]
    seconds = run(cmd, work)
    state = save_mace_state(load_pickled_model(work / "gete-mace.model"),
                            HERE / "gete-mace.mace-state.pt")
    return state, seconds


def train_allegro(work: Path, epochs: int | None, kind: str = "allegro",
                  seed: int | None = None) -> tuple[Path, float]:
    work.mkdir(parents=True, exist_ok=True)
    data = write_nequip_npz(read_trajectory(ROOT / "inputs/gete/gete_val.npz"),
                            work / "train.npz", TRAIN_FRAMES)
    cmd = ["nequip-train", "-cp", HERE / "configs", "-cn", f"{kind}_gete",
           f"data.split_dataset.dataset.file_path={data}", f"hydra.run.dir={work}"]
    if epochs:
        cmd.append(f"trainer.max_epochs={epochs}")
    if seed is not None:  # a committee member: the same config, another seed
        cmd.append(f"seed={seed}")
    seconds = run(cmd, work)
    package = HERE / f"gete-{kind}{_suffix(seed)}.nequip.zip"
    run(["nequip-package", "build", work / "last.ckpt", package], work)
    return package, seconds


def train_nequip(work: Path, epochs: int | None, seed: int | None = None
                 ) -> tuple[Path, float]:
    return train_allegro(work, epochs, kind="nequip", seed=seed)


def _suffix(seed: int | None) -> str:
    """The file-name suffix of a committee member trained with another seed."""
    return "" if seed is None else f"-seed{seed}"


def train_torchmd(work: Path, epochs: int | None) -> tuple[Path, float]:
    """torchmd-train (through torchmd_train_atomref.py, for the Atomref prior's reference
    energies) on the same frames, as TorchMD-Net's Custom .npy files; the checkpoint with
    the lowest validation loss is shipped."""
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    traj = read_trajectory(ROOT / "inputs/gete/gete_val.npz")
    frames = [traj[k] for k in TRAIN_FRAMES]
    np.save(work / "coords.npy", np.array([f.positions for f in frames], dtype=np.float32))
    from ase.data import atomic_numbers

    np.save(work / "embed.npy", np.array([atomic_numbers[s] for s in traj.symbols]))
    np.save(work / "energy.npy", np.array([[f.energy] for f in frames], dtype=np.float64))
    np.save(work / "forces.npy", np.array([f.forces for f in frames], dtype=np.float32))
    cmd = [sys.executable, HERE / "torchmd_train_atomref.py", "--conf",
           HERE / "configs" / "torchmd_gete.yaml", "--log-dir", work / "logs"]
    if epochs:
        cmd += ["--num-epochs", epochs]
    seconds = run(cmd, work)
    best = min((work / "logs").glob("epoch=*.ckpt"),
               key=lambda p: float(p.name.split("val_loss=")[1].split("-")[0]))
    ckpt = HERE / "gete-torchmd.ckpt"
    shutil.copy(best, ckpt)
    return ckpt, seconds


def train_painn(work: Path, epochs: int | None) -> tuple[Path, float]:
    """PaiNN by SchNetPack's own trainer (train_painn.py) on the same frames; its
    ``best_model`` is shipped as gete-painn.spk.pt."""
    cmd = [sys.executable, HERE / "train_painn.py", "--config", HERE / "configs" /
           "painn_gete.yaml", "--data", ROOT / "inputs/gete/gete_val.npz", "--out", work,
           "--frames", f"{TRAIN_FRAMES.start}:{TRAIN_FRAMES.stop}:{TRAIN_FRAMES.step}"]
    if epochs:
        cmd += ["--epochs", epochs]
    seconds = run(cmd, ROOT)
    target = HERE / "gete-painn.spk.pt"
    shutil.copy(work / "best_model", target)
    return target, seconds


def train_dimenet(work: Path, epochs: int | None) -> tuple[Path, float]:
    """DimeNet++ by egraff-lmp's documented loop (train_dimenet.py; PyG has no trainer) on
    the same frames, time-boxed to 12 minutes (the epochs it reached are in the file)."""
    work.mkdir(parents=True, exist_ok=True)
    target = HERE / "gete-dimenet.pt"
    cmd = [sys.executable, HERE / "train_dimenet.py", "--config", HERE / "configs" /
           "dimenet_gete.yaml", "--data", ROOT / "inputs/gete/gete_val.npz", "--out", target]
    cmd += ["--epochs", epochs] if epochs else ["--minutes", 12]
    seconds = run(cmd, ROOT)
    return target, seconds


# families whose files record no species list: deploy is told them
SPECIES = {"torchmd": ["--species", "Ge,Te"], "painn": ["--species", "Ge,Te"]}


def evaluate(name: str, source: Path, work: Path, train_seconds: float) -> dict:
    egraff = [sys.executable, "-m", "egraff_lmp.cli"]
    test = ROOT / "inputs/gete/gete_test.npz"
    artifact = HERE / f"{name}.egraff.pt"
    run(egraff + ["deploy", source, "-o", artifact, "--data", test]
        + SPECIES.get(name.split("-", 1)[1], []), ROOT)
    pred = work / f"{name}-test-pred.npz"
    run(egraff + ["predict", artifact, test, "-o", pred], ROOT)
    run(egraff + ["compare", pred, "--ref", test, "--json", work / f"{name}-static.json"],
        ROOT)
    static = json.loads((work / f"{name}-static.json").read_text())
    meta = json.loads(subprocess.run(egraff + ["deploy", "--info", artifact], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    return {"artifact": artifact.name, "source": source.name, "family": meta["family"],
            "r_max": meta["r_max"], "num_layers": meta["num_layers"], "dtype": meta["dtype"],
            "test_frames": static["n_frames_compared"],
            "e_mae_mev_per_atom": 1000 * static["e_mae_ev_per_atom"],
            "f_mae_mev_per_a": 1000 * static["f_mae_ev_per_a"],
            "train_seconds": train_seconds}


def write_readme(results: dict):
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    rows = ["| model | family | r_max (Å) | layers | dtype | test frames | energy MAE "
            "(meV/atom) | force MAE (meV/Å) | training (s) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        rows.append(f"| `{r['artifact']}` | {r['family']} | {r['r_max']:g} | {r['num_layers']} "
                    f"| {r['dtype']} | {r['test_frames']} | {r['e_mae_mev_per_atom']:.2f} | "
                    f"{r['f_mae_mev_per_a']:.1f} | {r['train_seconds']:.0f} |")
    table = "\n".join([start] + rows + [end])
    if start in text:
        text = text[:text.index(start)] + table + text[text.index(end) + len(end):]
    else:
        text += "\n" + table + "\n"
    readme.write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["mace", "allegro", "nequip", "torchmd", "painn",
                                       "dimenet"])
    ap.add_argument("--epochs", type=int, help="override the configs' number of epochs")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/egraff-train"))
    ap.add_argument("--seed", type=int, help="train a committee member with this seed "
                    "(nequip, allegro; with --only): gete-NAME-seedN.*")
    args = ap.parse_args()
    if args.seed is not None and args.only not in ("nequip", "allegro"):
        ap.error("--seed needs --only nequip or --only allegro")
    metrics_file = HERE / "metrics.json"
    results = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    for name, train in (("mace", train_mace), ("allegro", train_allegro),
                        ("nequip", train_nequip), ("torchmd", train_torchmd),
                        ("painn", train_painn), ("dimenet", train_dimenet)):
        if args.only and args.only != name:
            continue
        label = f"gete-{name}{_suffix(args.seed)}"
        work = args.workdir / label
        shutil.rmtree(work, ignore_errors=True)
        source, seconds = (train(work, args.epochs, seed=args.seed) if args.seed is not None
                           else train(work, args.epochs))
        results[label] = evaluate(label, source, work, seconds)
        metrics_file.write_text(json.dumps(results, indent=1) + "\n")
        write_readme(results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
