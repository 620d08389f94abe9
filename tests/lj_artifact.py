"""A Lennard-Jones energy model in the artifact calling convention (tests of the engines)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from egraff_lmp.deploy import artifact as art
from egraff_lmp.deploy.families import Source


class LJEnergy(torch.nn.Module):
    """Per-atom LJ energies (eV): half of every pair energy to each atom of the pair."""

    def __init__(self, epsilon: float, sigma: float):
        super().__init__()
        self.epsilon = epsilon
        self.sigma = sigma

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        i, j = edge_index[0], edge_index[1]
        r = torch.linalg.norm(pos[j] - pos[i] + shift, dim=1)
        sr6 = (self.sigma / r) ** 6
        e = 4.0 * self.epsilon * (sr6 * sr6 - sr6)
        return torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, i, 0.5 * e)


def lj_artifact(directory: Path, epsilon=0.0104, sigma=3.4, rc=8.5, element="Ar",
                elements=None) -> Path:
    """Write ``lj.egraff.pt`` (and the JSON it is 'trained' from) into ``directory``."""
    source_file = directory / "lj.json"
    source_file.write_text(json.dumps({"epsilon": epsilon, "sigma": sigma, "rc": rc}))
    src = Source(family="lj", energy_model=LJEnergy(epsilon, sigma),
                 type_names=list(elements or [element]), r_max=rc, num_layers=1,
                 strictly_local=True, dtype=torch.float64, family_version="test")
    return art.save(art.script(src), art.build_metadata(src, source_file, {}),
                    directory / "lj.egraff.pt")


def argon_input(pair: str, tail: str = "") -> str:
    """256 argon atoms (fcc, slightly displaced, 300 K), NVE, 20 steps, thermo every 5
    steps with full precision; ``pair`` sets the potential, ``tail`` adds output commands
    before the run."""
    return f"""
units metal
atom_style atomic
lattice fcc 5.26
region box block 0 4 0 4 0 4
create_box 1 box
create_atoms 1 box
mass 1 39.948
velocity all create 300 12345 loop geom
displace_atoms all random 0.1 0.1 0.1 777
{pair}
neighbor 1.0 bin
fix 1 all nve
thermo_style custom step pe ke etotal press pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.15g
thermo 5
{tail}
run 20
"""
