"""Train a PaiNN with SchNetPack 2's own trainer (``AtomisticTask`` + Lightning).

    python train_painn.py --config CONFIG.yaml --data TRAJ --out DIR [--epochs N]
                          [--frames START:STOP:STEP] [--precision 32|64]

What ``spktrain`` does, from Python (its Hydra command line needs SchNetPack's full
dependency set): the frames go into SchNetPack's ``ASEAtomsData`` database; an
``AtomsDataModule`` with ``ASENeighborList`` (periodic cells included),
``RemoveOffsets(energy, remove_mean=True)`` (the mean energy per atom: extensive) and a
cast; a ``NeuralNetworkPotential`` of ``PairwiseDistances`` → ``PaiNN`` → ``Atomwise`` +
``Forces`` with ``AddOffsets`` post-processing; ``AtomisticTask`` with energy and force MSE;
SchNetPack's ``ModelCheckpoint`` writes ``DIR/best_model`` (the file ``egraff-lmp deploy
--species ...`` reads). SchNetPack is imported through egraff-lmp's one-name shim (see
``egraff_lmp/deploy/families/schnetpack.py``). Units: eV, Å.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from egraff_lmp.deploy.families.schnetpack import import_schnetpack  # noqa: E402
from egraff_lmp.io import read_trajectory  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--frames", default="0:270:2")
    ap.add_argument("--precision", type=int, choices=[32, 64])
    args = ap.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    epochs = args.epochs or cfg["epochs"]
    precision = args.precision or cfg.get("precision", 32)

    spk = import_schnetpack()
    import pytorch_lightning as pl
    import torch
    import torchmetrics
    from schnetpack.data import ASEAtomsData, AtomsDataModule

    pl.seed_everything(cfg.get("seed", 1), workers=True)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    traj = read_trajectory(args.data.resolve())
    os.chdir(out)  # SchNetPack's data module leaves a splitting.lock in the working directory
    start, stop, step = (int(v) for v in args.frames.split(":"))
    atoms, props = [], []
    for k in range(start, min(stop, len(traj)), step):
        f = traj[k]
        atoms.append(f.to_atoms(traj.symbols))
        props.append({"energy": np.array([f.energy]), "forces": np.asarray(f.forces)})
    db = ASEAtomsData.create(str(out / "train.db"), distance_unit="Ang",
                             property_unit_dict={"energy": "eV", "forces": "eV/Ang"})
    db.add_systems(props, atoms)
    cutoff = float(cfg["cutoff"])
    cast = spk.transform.CastTo64() if precision == 64 else spk.transform.CastTo32()
    data = AtomsDataModule(
        str(out / "train.db"), batch_size=cfg["batch_size"], num_train=len(atoms)
        - cfg["num_val"], num_val=cfg["num_val"], num_test=0,
        transforms=[spk.transform.ASENeighborList(cutoff=cutoff),
                    spk.transform.RemoveOffsets("energy", remove_mean=True,
                                                remove_atomrefs=False, is_extensive=True),
                    cast],
        num_workers=0, split_file=str(out / "split.npz"), pin_memory=False)
    data.prepare_data()
    data.setup()
    rep = spk.representation.PaiNN(
        n_atom_basis=cfg["n_atom_basis"], n_interactions=cfg["n_interactions"],
        radial_basis=spk.nn.GaussianRBF(n_rbf=cfg["n_rbf"], cutoff=cutoff),
        cutoff_fn=spk.nn.CosineCutoff(cutoff))
    model = spk.model.NeuralNetworkPotential(
        representation=rep, input_modules=[spk.atomistic.PairwiseDistances()],
        output_modules=[spk.atomistic.Atomwise(n_in=cfg["n_atom_basis"], output_key="energy"),
                        spk.atomistic.Forces(energy_key="energy", force_key="forces")],
        postprocessors=[spk.transform.CastTo64(),
                        spk.transform.AddOffsets("energy", add_mean=True, add_atomrefs=False,
                                                 is_extensive=True)])
    outputs = [spk.task.ModelOutput(name=name, loss_fn=torch.nn.MSELoss(),
                                    loss_weight=cfg[f"{name}_weight"],
                                    metrics={"MAE": torchmetrics.MeanAbsoluteError()})
               for name in ("energy", "forces")]
    task = spk.task.AtomisticTask(model=model, outputs=outputs,
                                  optimizer_cls=torch.optim.AdamW,
                                  optimizer_args={"lr": cfg["lr"]})
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=str(out),
        precision="64-true" if precision == 64 else "32-true",
        logger=pl.loggers.CSVLogger(str(out)), enable_progress_bar=False,
        callbacks=[spk.train.ModelCheckpoint(model_path=str(out / "best_model"),
                                             save_top_k=1, monitor="val_loss")])
    t0 = time.perf_counter()
    trainer.fit(task, datamodule=data)
    print(f"trained {epochs} epochs in {time.perf_counter() - t0:.1f} s: {out / 'best_model'}")


if __name__ == "__main__":
    main()
