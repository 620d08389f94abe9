"""Train a DimeNet++ (PyG ``DimeNetPlusPlus``) on a trajectory and write egraff-lmp's
DimeNet++ file, which ``egraff-lmp deploy`` reads.

    python inputs/models/train_dimenet.py --config C --data NPZ --out FILE
        [--epochs N] [--minutes M] [--frames START:STOP:STEP] [--seed S]

PyG ships the model but no trainer, and PyG's own forward needs ``torch_cluster`` (its radius
graph), which has no wheel here: this is a short, documented training loop instead.

1. Frames: ``egraff_lmp.io.read_trajectory(--data)``; ``--frames`` (default: the config's
   ``frames``; for GeTe ``0:270:2`` of the val split, the same 135 frames as the other
   shipped models, see ``reproduce.py``), of which ``n_val`` (15) are held out at random
   (seeded) for validation.
2. Edges: a full periodic neighbour list within the cutoff for each frame (vesin: both
   directions, Cartesian shifts ``S @ cell``), as ASE and LAMMPS give them to the deployed
   model.
3. Model: ``DimeNetPPEnergy`` (``egraff_lmp.deploy.families.dimenet``), the energy model
   egraff-lmp deploys, which equals PyG's ``DimeNetPlusPlus.forward`` (tests/test_dimenet.py)
   and shares its parameters with the PyG model built from the config's ``model`` kwargs;
   that model's state dict is what is saved. It uses every neighbour within the cutoff:
   ``max_num_neighbors`` (PyG's radius-graph bound) must be at least the largest count in
   the data (checked), so that PyG's own forward means the same model.
4. Energies: per-element reference energies ``e0`` = the mean energy per atom of the
   training frames, given to every element (the composition of these data never changes,
   so only the composition-weighted sum is determined); the network learns ``E - sum e0``.
5. Loss: ``energy_weight * MSE(E/N, eV/atom) + force_weight * MSE(F, eV/Å)``, forces
   ``-dE/dr`` by autograd (``create_graph``), Adam with ``lr`` (reduced by ``lr_factor``
   after ``lr_patience`` epochs without a better validation loss), batches of
   ``batch_size`` frames (disjoint graphs), shuffled every epoch.
6. Stops after ``epochs`` (``--epochs``) or ``--minutes`` of training (checked after every
   batch), whichever comes first; validates after every epoch and keeps the weights with the
   lowest validation loss.
7. Writes ``{"format": "egraff-lmp-dimenet++", "model": "DimeNetPlusPlus",
   "hyperparameters": ..., "species": [...], "energy_shift_per_atom": {el: e0},
   "dtype": ..., "state_dict": ..., "training": {data, frames, epochs, seconds, ...}}``.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from ase.data import atomic_numbers
from torch_geometric.nn.models import DimeNetPlusPlus

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from egraff_lmp.deploy.families.dimenet import FORMAT, DimeNetPPEnergy  # noqa: E402
from egraff_lmp.io import read_trajectory  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def frame_range(text: str) -> range:
    parts = [int(p) if p else None for p in str(text).split(":")]
    if not 1 <= len(parts) <= 3:
        raise SystemExit(f"--frames {text}: expected START:STOP[:STEP]")
    if len(parts) == 1:
        return range(parts[0])
    start, stop, step = (parts + [None])[:3]
    return range(start or 0, stop, step or 1)


def graph(frame, symbols, species, cutoff, dtype):
    """One frame as model inputs: positions, types, edges (both directions), shifts."""
    from vesin import NeighborList

    pos = np.asarray(frame.positions, dtype=np.float64)
    periodic = frame.cell is not None and any(frame.pbc)
    box = np.asarray(frame.cell, dtype=np.float64) if periodic else np.zeros((3, 3))
    i, j, s = NeighborList(cutoff=cutoff, full_list=True).compute(
        pos, box, list(frame.pbc) if periodic else False, quantities="ijS")
    return {"pos": torch.tensor(pos, dtype=dtype),
            "types": torch.tensor([species.index(x) for x in symbols]),
            "edge_index": torch.from_numpy(np.stack([i, j]).astype(np.int64)),
            "shift": torch.tensor(np.asarray(s, dtype=np.float64) @ box, dtype=dtype),
            "energy": float(frame.energy), "forces": torch.tensor(frame.forces, dtype=dtype),
            "max_neighbours": int(np.bincount(i, minlength=len(pos)).max()) if len(i) else 0}


def batch(graphs):
    """Frames as one disjoint graph, with the frame of every atom."""
    offsets = np.cumsum([0] + [len(g["pos"]) for g in graphs[:-1]])
    return {"pos": torch.cat([g["pos"] for g in graphs]),
            "types": torch.cat([g["types"] for g in graphs]),
            "edge_index": torch.cat([g["edge_index"] + int(o) for g, o in zip(graphs, offsets)],
                                    dim=1),
            "shift": torch.cat([g["shift"] for g in graphs]),
            "frame": torch.cat([torch.full((len(g["pos"]),), k) for k, g in enumerate(graphs)]),
            "residual": torch.tensor([g["residual"] for g in graphs], dtype=torch.float64),
            "n_atoms": torch.tensor([len(g["pos"]) for g in graphs], dtype=torch.float64),
            "forces": torch.cat([g["forces"] for g in graphs])}


def evaluate(net, b, create_graph):
    """Per-frame energies (residuals, float64) and forces of a batch."""
    pos = b["pos"].detach().clone().requires_grad_(True)
    e_atom = net(pos, b["types"], b["edge_index"], b["shift"])
    (g,) = torch.autograd.grad(e_atom.sum(), pos, create_graph=create_graph)
    e = torch.zeros(len(b["n_atoms"]), dtype=torch.float64).index_add(
        0, b["frame"], e_atom.to(torch.float64))
    return e, -g


def losses(net, b, weights, create_graph):
    e, f = evaluate(net, b, create_graph)
    de = (e - b["residual"]) / b["n_atoms"]
    df = (f - b["forces"]).to(torch.float64)
    loss = weights["energy_weight"] * de.pow(2).mean() + weights["force_weight"] * df.pow(2).mean()
    return loss, de.detach(), df.detach()


def validate(net, graphs, weights, batch_size):
    total, de_all, df_all = 0.0, [], []
    for k in range(0, len(graphs), batch_size):
        chunk = graphs[k:k + batch_size]
        loss, de, df = losses(net, batch(chunk), weights, create_graph=False)
        total += float(loss.detach()) * len(chunk)
        de_all.append(de)
        df_all.append(df.reshape(-1))
    de, df = torch.cat(de_all), torch.cat(df_all)
    return {"loss": total / len(graphs), "e_mae_mev_per_atom": 1000 * float(de.abs().mean()),
            "f_mae_mev_per_a": 1000 * float(df.abs().mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, help="override the config's epochs")
    ap.add_argument("--minutes", type=float, help="stop training after this long")
    ap.add_argument("--frames", help="START:STOP[:STEP] of --data (default: the config's)")
    ap.add_argument("--seed", type=int, help="override the config's seed")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    cfg = yaml.safe_load(args.config.read_text())
    hp = dict(cfg["model"])
    hp.setdefault("out_channels", 1)
    if hp.get("cutoff") is None:
        raise SystemExit(f"{args.config}: model.cutoff is required")
    dtype = DTYPES[cfg.get("dtype", "float32")]
    seed = args.seed if args.seed is not None else int(cfg.get("seed", 0))
    epochs = args.epochs if args.epochs is not None else int(cfg.get("epochs", 10))
    batch_size = int(cfg.get("batch_size", 2))
    weights = {"energy_weight": float(cfg.get("energy_weight", 1.0)),
               "force_weight": float(cfg.get("force_weight", 1.0))}
    frames_text = args.frames or str(cfg.get("frames", "0:270:2"))

    traj = read_trajectory(args.data)
    symbols = list(traj.symbols)
    species = list(cfg.get("species") or sorted(set(symbols), key=atomic_numbers.get))
    frames = list(frame_range(frames_text))
    rng = np.random.default_rng(seed)
    n_val = int(cfg.get("n_val", 15))
    val_idx = sorted(int(v) for v in rng.choice(frames, size=n_val, replace=False))
    train_idx = [k for k in frames if k not in set(val_idx)]
    cutoff = float(hp["cutoff"])
    graphs = {k: graph(traj[k], symbols, species, cutoff, dtype) for k in frames}
    most = max(g["max_neighbours"] for g in graphs.values())
    hp.setdefault("max_num_neighbors", 32)
    if most > int(hp["max_num_neighbors"]):
        raise SystemExit(f"an atom has {most} neighbours within {cutoff} Å, more than "
                         f"max_num_neighbors={hp['max_num_neighbors']}: raise it in "
                         f"{args.config} (PyG's radius graph would drop neighbours)")
    e0 = float(np.mean([graphs[k]["energy"] / len(symbols) for k in train_idx]))
    for g in graphs.values():
        g["residual"] = g["energy"] - e0 * len(g["pos"])
    train = [graphs[k] for k in train_idx]
    val = [graphs[k] for k in val_idx]

    torch.manual_seed(seed)

    pyg = DimeNetPlusPlus(**hp).to(dtype)
    net = DimeNetPPEnergy(pyg, [atomic_numbers[s] for s in species]).to(dtype)
    # DimeNetPPEnergy holds a copy: train its modules, then put them back into the PyG model
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=float(cfg.get("lr", 1e-3)))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=float(cfg.get("lr_factor", 0.8)), patience=int(cfg.get("lr_patience", 3)))

    print(f"{len(train)} training and {len(val)} validation frames of {args.data.name} "
          f"({frames_text}), {len(symbols)} atoms, at most {most} neighbours within "
          f"{cutoff} Å; e0 = {e0:.6f} eV/atom; {sum(p.numel() for p in params)} parameters; "
          f"{dtype}", flush=True)
    best = {"loss": math.inf}
    best_state = copy.deepcopy(net.state_dict())
    limit = args.minutes * 60 if args.minutes else math.inf
    t_train = time.perf_counter()
    done, out_of_time = 0, False
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = rng.permutation(len(train))
        total = 0.0
        for k in range(0, len(order), batch_size):
            chunk = [train[int(i)] for i in order[k:k + batch_size]]
            loss, _, _ = losses(net, batch(chunk), weights, create_graph=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(chunk)
            if time.perf_counter() - t_train > limit:
                out_of_time = True
                break
        done = epoch
        net.eval()
        v = validate(net, val, weights, batch_size)
        sched.step(v["loss"])
        mark = ""
        if v["loss"] < best["loss"]:
            best = {**v, "epoch": epoch}
            best_state = copy.deepcopy(net.state_dict())
            mark = " *"
        print(f"epoch {epoch:3d}  train loss {total / len(train):.5f}  val loss "
              f"{v['loss']:.5f}  E {v['e_mae_mev_per_atom']:.2f} meV/atom  F "
              f"{v['f_mae_mev_per_a']:.1f} meV/Å  lr {opt.param_groups[0]['lr']:.2g}  "
              f"{time.perf_counter() - t0:.1f} s{mark}", flush=True)
        if out_of_time:
            print(f"stopped after {args.minutes} minutes", flush=True)
            break
    seconds = time.perf_counter() - t_train

    net.load_state_dict(best_state)
    # back into PyG's model: the energy model's modules are PyG's (same names)
    state = {}
    for key in pyg.state_dict():
        if key.startswith("output_blocks."):
            idx, rest = key.split(".", 2)[1:]
            src = (f"output_first.{rest}" if idx == "0"
                   else f"output_blocks.{int(idx) - 1}.{rest}")
        else:
            src = key
        state[key] = net.state_dict()[src].detach().clone()
    pyg.load_state_dict(state)
    out = {"format": FORMAT, "model": "DimeNetPlusPlus", "hyperparameters": hp,
           "species": species, "energy_shift_per_atom": {s: e0 for s in species},
           "dtype": str(dtype).replace("torch.", ""), "state_dict": pyg.state_dict(),
           "training": {"data": args.data.name, "frames": frames_text,
                        "train_frames": train_idx, "val_frames": val_idx, "epochs": done,
                        "last_epoch_partial": out_of_time,
                        "seconds": round(seconds, 1),
                        "wall_seconds": round(time.perf_counter() - t_start, 1),
                        "best_epoch": best.get("epoch"),
                        "best_val": {k: v for k, v in best.items() if k != "epoch"},
                        "seed": seed, "batch_size": batch_size, **weights,
                        "lr": float(cfg.get("lr", 1e-3)), "config": args.config.name}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(out, tmp)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {done} epochs{' (the last one cut short)' if out_of_time else ''} "
          f"in {seconds:.0f} s, best validation epoch "
          f"{best.get('epoch')} (E {best.get('e_mae_mev_per_atom', math.nan):.2f} meV/atom, "
          f"F {best.get('f_mae_mev_per_a', math.nan):.1f} meV/Å)", flush=True)


if __name__ == "__main__":
    main()
