"""Tiny models trained in seconds on real GeTe frames, with the families' own trainers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import GETE_VAL

from egraff_lmp.deploy.training_data import write_extxyz
from egraff_lmp.io import read_trajectory


def train_mace(workdir: Path, name: str, correlation: int = 2) -> Path:
    """``mace_run_train`` on 8 frames, 2 epochs: a real (if poor) MACE model (float64).

    correlation=1 gives the BOTNet-style model (two-body messages; mace-torch 0.3.16 has
    no separate BOTNet class any more).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    traj = read_trajectory(GETE_VAL)
    write_extxyz(traj, workdir / "train.xyz", range(0, 200, 25))
    write_extxyz(traj, workdir / "valid.xyz", range(200, 300, 25))
    cmd = [sys.executable, "-m", "mace.cli.run_train", "--name", name,
           "--train_file", "train.xyz", "--valid_file", "valid.xyz", "--E0s", "average",
           "--model", "MACE", "--num_channels", "8", "--max_L", "1",
           "--correlation", str(correlation), "--num_interactions", "2", "--r_max", "4.0",
           "--num_radial_basis", "6", "--radial_MLP", "[16,16]", "--batch_size", "2",
           "--max_num_epochs", "2", "--energy_key", "REF_energy", "--forces_key",
           "REF_forces", "--default_dtype", "float64", "--device", "cpu", "--seed", "1"]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return workdir / f"{name}.model"


CONFIGS = Path(__file__).parent / "configs"


def train_nequip(workdir: Path, kind: str) -> Path:
    """``nequip-train`` on 12 frames, 1 epoch (configs/{kind}_tiny.yaml; kind: nequip or
    allegro): returns the checkpoint ``last.ckpt`` (float64 model)."""
    from egraff_lmp.deploy.training_data import write_nequip_npz

    workdir.mkdir(parents=True, exist_ok=True)
    data = write_nequip_npz(read_trajectory(GETE_VAL), workdir / "train.npz",
                            range(0, 300, 25))
    cmd = ["nequip-train", "-cp", str(CONFIGS), "-cn", f"{kind}_tiny",
           f"data.split_dataset.dataset.file_path={data}", f"hydra.run.dir={workdir}"]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return workdir / "last.ckpt"


def train_torchmd(workdir: Path, precision: int = 64) -> Path:
    """``torchmd-train`` (TorchMD-Net ET, configs/torchmd_tiny.yaml) on 12 frames, 2
    epochs, from TorchMD-Net ``Custom`` .npy files: returns the last epoch's checkpoint."""
    import numpy as np
    from ase.data import atomic_numbers

    workdir.mkdir(parents=True, exist_ok=True)
    traj = read_trajectory(GETE_VAL)
    frames = [traj[k] for k in range(0, 300, 25)]
    np.save(workdir / "coords.npy", np.array([f.positions for f in frames]))
    np.save(workdir / "embed.npy", np.array([atomic_numbers[s] for s in traj.symbols]))
    np.save(workdir / "energy.npy", np.array([[f.energy] for f in frames]))
    np.save(workdir / "forces.npy", np.array([f.forces for f in frames]))
    cmd = ["torchmd-train", "--conf", str(CONFIGS / "torchmd_tiny.yaml"), "--precision",
           str(precision)]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return max((workdir / "logs").glob("epoch=*.ckpt"),
               key=lambda p: int(p.name.split("=")[1].split("-")[0]))


def train_painn(workdir: Path, precision: int = 64) -> Path:
    """PaiNN by SchNetPack's own trainer (inputs/models/train_painn.py with
    configs/painn_tiny.yaml) on 12 frames, 2 epochs: returns SchNetPack's ``best_model``."""
    script = Path(__file__).parents[1] / "inputs" / "models" / "train_painn.py"
    cmd = [sys.executable, str(script), "--config", str(CONFIGS / "painn_tiny.yaml"),
           "--data", str(GETE_VAL), "--out", str(workdir), "--frames", "0:300:25",
           "--precision", str(precision)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return workdir / "best_model"
