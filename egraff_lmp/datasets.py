"""The datasets of the EGraFFBench study, at the paths its own code repository ships them.

The study's repository (M3RG-IITD/MDBENCHGNN, commit e4ee1e9) keeps its data in a
``Datasets/`` folder; every path here is relative to that folder:

- ``<name>/data/<split>/nequip_npz.npz`` (GeTe, 3bpa, acac, Data_lips),
- ``md17/<molecule>/<split>/nequip_npz.npz``,
- ``LiPS20/<composition>/3000K/deepmd/<formula>/`` (DeePMD systems; the repository's
  ``All_LiPS20/`` is the same tree and is used when ``LiPS20/`` is absent).

A :class:`Dataset` names its species, the temperature (K) and MD timestep (fs) the
simulations use, the spacing of its reference frames (fs; ``None`` when the frames are not a
time-contiguous trajectory), its splits (lists of files, joined in order) and, in
``sources``, where each of those numbers comes from; numbers that no source fixes are
estimated from the data (:mod:`egraff_lmp.estimate`) and listed in ``estimated``.

Files are looked up under ``$EGRAFF_LMP_DATA`` (a ``Datasets/`` folder, or a clone of the
repository that contains one), then ``~/.cache/egraff-lmp/datasets`` (where ``datasets fetch``
puts them), then the copies the package ships (GeTe test/val, byte for byte; the
acetylacetone test set as the BOTNet extxyz file it was made from).

Temperatures: the study's MD scripts run every dataset at 520 K (ASE Langevin, 1 fs). The
registry instead simulates each dataset at its reference's own temperature, since structure
and dynamics are compared against that reference; set ``temperature: 520`` in an evaluation
config to reproduce the scripts' choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import EgraffError
from .resources import examples_dir

REPOSITORY = "M3RG-IITD/MDBENCHGNN"
COMMIT = "e4ee1e9"
NPZ = "nequip_npz.npz"


@dataclass(frozen=True)
class Dataset:
    """One dataset: species, simulation settings (K, fs), split files and their sources."""

    name: str
    species: tuple[str, ...]
    temperature: float
    timestep_fs: float
    frame_spacing_fs: float | None
    splits: dict = field(default_factory=dict)
    periodic: bool = True
    role: str = ""
    provenance: str = ""
    frames: dict = field(default_factory=dict)      # split -> frame count a source fixes
    sources: dict = field(default_factory=dict)     # field -> where its value comes from
    estimated: tuple[str, ...] = ()                 # fields estimated from the data
    group: str = ""                                 # md17, lips20, ...

    @property
    def contiguous(self) -> bool:
        return self.frame_spacing_fs is not None

    @property
    def reference_split(self) -> str:
        """The split the simulations are compared with."""
        return "trajectory" if "trajectory" in self.splits else "test"

    def with_overrides(self, **kw) -> Dataset:
        given = {k: v for k, v in kw.items() if v is not None}
        if not given:
            return self
        return replace(self, **given,
                       estimated=tuple(f for f in self.estimated if f not in given),
                       sources={**self.sources, **{k: "set in the config" for k in given}})


# -- the registry ----------------------------------------------------------------------
_MD17 = {"aspirin": ("C", "H", "O"), "ethanol": ("C", "H", "O"),
         "naphthalene": ("C", "H"), "salicylic_acid": ("C", "H", "O")}
# Frame spacing (fs) and kinetic temperature (K) of the MD17 test trajectories, estimated from
# all 1000 frames (egraff-lmp datasets estimate md17_<molecule>). Aspirin is not in the
# subset here: it carries the others' 0.5 fs, marked as such.
_MD17_ESTIMATES = {"ethanol": (0.493, 661.0), "naphthalene": (0.500, 564.0),
                   "salicylic_acid": (0.499, 575.0), "aspirin": (0.5, None)}

# LiPS20: composition folder -> DeePMD system folder (the repository's Datasets/LiPS20/
# Readme.md lists all twenty, with 1000 frames each).
LIPS20 = {
    "beta-Li3PS4": "Li24P8S32", "g70": "Li82P38S133", "g80": "Li92P34S128", "Li": "Li54P0S0",
    "Li2PS3-hex": "Li32P16S48", "Li2S": "Li64P0S32", "Li48P16S61": "Li48P16S61",
    "Li7P3S11": "Li28P12S44", "P": "Li0P48S0", "P4S3": "Li0P32S24", "g67": "Li82P40S138",
    "g75": "Li91P35S129", "gamma-Li3PS4": "Li48P16S64", "Li2P2S6": "Li16P16S48",
    "Li2PS3-orth": "Li32P16S48", "Li3P": "Li48P16S0", "Li4P2S6": "Li32P16S48",
    "Li7PS6": "Li28P4S24", "P2S5": "Li0P8S20", "S": "Li0P0S32",
}
# The LiPS20 frames are not in time order at any resolvable spacing: estimated from the six
# compositions here, the median ratio of second difference to step is 0.92-0.94 (a
# trajectory gives 0.04-0.16, shuffled frames 1.3-1.7), so no spacing or kinetic temperature
# can be read from them (egraff-lmp datasets estimate lips20-<composition>).
_LIPS20_NOT_ORDERED = ("not a time-ordered trajectory, judged from the data (second "
                       "difference / step 0.92-0.94 in the compositions here; 0.04-0.16 for "
                       "real trajectories): no frame spacing or kinetic temperature")


def _species_of(formula: str) -> tuple[str, ...]:
    import re

    return tuple(sorted(s for s, n in re.findall(r"([A-Z][a-z]?)(\d*)", formula)
                        if n != "0"))


def _split_paths(root: str, splits) -> dict:
    return {s: [f"{root}/{s}/{NPZ}"] for s in splits}


def _registry() -> dict[str, Dataset]:
    out = []
    for mol, species in _MD17.items():
        dt, temp = _MD17_ESTIMATES[mol]
        out.append(Dataset(
            f"md17_{mol}", species, 500.0, dt, dt,
            _split_paths(f"md17/{mol}", ("train", "val", "test")), periodic=False,
            role="molecule in vacuum: trained on 950 shuffled frames, simulated from the "
                 "contiguous test trajectory", group="md17",
            frames={"train": 950, "val": 50, "test": 1000},
            sources={"temperature": "500 K: the MD17 AIMD temperature (Chmiela et al., "
                                    "Sci. Adv. 2017)" + (f"; the test trajectory's kinetic "
                                    f"temperature is {temp:g} K" if temp else ""),
                     "frame_spacing_fs": ("estimated from the test trajectory's positions "
                                          "and forces" if temp else
                                          "the other molecules' estimate (0.49-0.50 fs): "
                                          "aspirin is not in the subset here"),
                     "timestep_fs": "the reference's frame spacing (runs line up with it)"},
            estimated=("frame_spacing_fs",),
            provenance="MD17 (sgdml.org) as the study ships it: Datasets/md17/"
                       f"{mol}/{{train,val,test}}; pbc False"))
    out.append(Dataset(
        "3bpa", ("C", "H", "N", "O"), 600.0, 0.5, None,
        _split_paths("3bpa/data", ("train", "val", "test")), periodic=False,
        role="out-of-distribution temperature: trained at 300 K, simulated and tested at "
             "600 K", frames={"train": 500, "val": 1669, "test": 2138},
        sources={"temperature": "600 K: the test split has 2138 frames, the BOTNet set "
                                "test_600K.xyz (Kovács et al. 2021); val (1669) is "
                                "test_300K.xyz, train (500) train_300K.xyz",
                 "timestep_fs": "0.5 fs: H-containing molecule, not fixed by a source"},
        provenance="BOTNet datasets (DFT on decorrelated MD geometries, not a trajectory) as "
                   "the study ships them: Datasets/3bpa/data/{train,val,test}, stored in a "
                   "50 Å box with pbc True, read as a molecule"))
    out.append(Dataset(
        "acetylacetone", ("C", "H", "O"), 300.0, 0.5, None,
        _split_paths("acac/data", ("train", "test")), periodic=False,
        role="molecule at its training temperature (the 600 K set is not in the study's "
             "repository: the temperature task runs on 3bpa)",
        frames={"train": 500, "test": 650},
        sources={"temperature": "300 K: the BOTNet acetylacetone sets train_300K (500) and "
                                "test_MD_300K (650 frames)",
                 "timestep_fs": "0.5 fs: H-containing molecule, not fixed by a source"},
        provenance="BOTNet acetylacetone (PBE+D3 on decorrelated 300 K MD geometries) as the "
                   "study ships it: Datasets/acac/data/{train,test} (its val equals test)"))
    out.append(Dataset(
        "lips", ("Li", "P", "S"), 520.0, 1.0, None,
        _split_paths("Data_lips/data", ("train", "val", "test")),
        role="in-distribution crystal (Li27P12S44, 83 atoms, frames shuffled)",
        sources={"temperature": "520 K: the study's MD scripts' default (the LiPS AIMD of "
                                "Batzner et al. 2022); not checked against that paper here",
                 "timestep_fs": "1 fs: the study's MD scripts"},
        provenance="LiPS as the study ships it: Datasets/Data_lips/data/{train,val,test} "
                   "(the repository stores train only compressed, as .bz2)"))
    for comp, formula in LIPS20.items():
        out.append(Dataset(
            f"lips20-{comp}", _species_of(formula), 3000.0, 1.0, None,
            {"test": [f"LiPS20/{comp}/3000K/deepmd/{formula}"]}, group="lips20",
            role="unseen compositions: 1000 AIMD frames per composition (train on some, "
                 "simulate the others)", frames={"test": 1000},
            sources={"temperature": "3000 K: the folder name 3000K (the study's MD scripts "
                                    "use 520 K)",
                     "frame_spacing_fs": _LIPS20_NOT_ORDERED,
                     "timestep_fs": "1 fs: the study's MD scripts"},
            estimated=("frame_spacing_fs",),
            provenance=f"LiPS20 {comp} ({formula}), AIMD, DeePMD system Datasets/LiPS20/"
                       f"{comp}/3000K/deepmd/{formula}"))
    out.append(Dataset(
        "gete", ("Ge", "Te"), 920.0, 1.19, 1.19,
        {"train": [f"GeTe/data/train/{NPZ}"], "val": [f"GeTe/data/val/{NPZ}"],
         "test": [f"GeTe/data/test/{NPZ}"],
         "test-val": [f"GeTe/data/test/{NPZ}", f"GeTe/data/val/{NPZ}"]},
        role="liquid, Car-Parrinello MD", frames={"val": 300, "test": 300},
        sources={"temperature": "estimated from the velocities (910-950 K; 950 K over the "
                                "test split)",
                 "frame_spacing_fs": "estimated from positions and forces (1.187 fs over the "
                                     "test split, close to 50 a.u. = 1.209 fs)",
                 "timestep_fs": "the reference's frame spacing"},
        estimated=("temperature", "frame_spacing_fs"),
        provenance="GeTe4 CPMD as the study ships it: Datasets/GeTe/data/{test,val}; "
                   "simulations are judged against the test split, which the shipped models "
                   "never saw (they are trained on val); the test split continues into val, "
                   "joined as the split 'test-val' for a longer reference "
                   "(trajectory_split: test-val)"))
    return {d.name: d for d in out}


REGISTRY: dict[str, Dataset] = _registry()

# Copies the package ships (under inputs/): registry path -> shipped path.
SHIPPED = {f"GeTe/data/test/{NPZ}": "gete/gete_test.npz",
           f"GeTe/data/val/{NPZ}": "gete/gete_val.npz",
           f"acac/data/test/{NPZ}": "acac/acac_test_300K.xyz"}


def data_roots() -> list[Path]:
    """Where ``Datasets/`` trees are looked for, first match wins."""
    roots = []
    env = os.environ.get("EGRAFF_LMP_DATA")
    if env:
        p = Path(env).expanduser()
        roots.append(p / "Datasets" if (p / "Datasets").is_dir() else p)
    roots.append(cache_dir())
    return roots


def cache_dir() -> Path:
    return Path.home() / ".cache" / "egraff-lmp" / "datasets"


def get(name: str) -> Dataset:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        group = [n for n in REGISTRY if n.startswith(name.rstrip("-_") + "-")]
        if group:
            raise EgraffError(f"'{name}' is {len(group)} datasets: {', '.join(group)}") \
                from None
        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise EgraffError(f"unknown dataset '{name}'{hint}; 'egraff-lmp datasets' lists "
                          "them") from None


def alternatives(relpath: str):
    """The paths a registry path may have in a ``Datasets/`` tree (LiPS20 is also shipped
    as ``All_LiPS20/``)."""
    yield relpath
    if relpath.startswith("LiPS20/"):
        yield "All_LiPS20/" + relpath[len("LiPS20/"):]


def locate(relpath: str, base: Path | None = None) -> Path | None:
    """The first existing ``relpath`` under ``base`` (if given), the data roots, or the
    shipped copies; a ``.bz2`` copy (the repository's way of storing large files) is
    decompressed into the cache on first use."""
    p = Path(relpath).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for root in ([base] if base else []) + data_roots():
        for rel in alternatives(relpath):
            if (root / rel).exists():
                return (root / rel).resolve()
            packed = root / (rel + ".bz2")
            if packed.is_file():
                return _unpacked(packed, cache_dir() / rel)
    if relpath in SHIPPED and (examples_dir() / SHIPPED[relpath]).exists():
        return (examples_dir() / SHIPPED[relpath]).resolve()
    return None


def _unpacked(packed: Path, target: Path) -> Path:
    import bz2
    import shutil

    if not target.exists() or target.stat().st_mtime < packed.stat().st_mtime:
        from .files import atomic_path

        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp, bz2.open(packed) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def split_files(ds: Dataset, split: str, base: Path | None = None) -> list[Path]:
    """The files of ``split``, or one clear error naming what is missing and how to get it."""
    if split not in ds.splits:
        raise EgraffError(f"dataset {ds.name} has no split '{split}' (it has "
                          f"{', '.join(ds.splits)})")
    found, missing = [], []
    for rel in ds.splits[split]:
        p = locate(rel, base)
        (found if p else missing).append(p or rel)
    if missing:
        where = ", ".join(str(r) for r in data_roots())
        raise EgraffError(f"dataset {ds.name}: split {split} ({missing[0]}) not found under "
                          f"{where}; run 'egraff-lmp datasets fetch {ds.name}' or point "
                          "EGRAFF_LMP_DATA at the study's Datasets/ folder")
    return found


def present_splits(ds: Dataset) -> dict[str, bool]:
    """Each split of ``ds`` and whether all its files are here."""
    return {s: all(locate(rel) for rel in files) for s, files in ds.splits.items()}


def available(ds: Dataset) -> bool:
    return present_splits(ds).get(ds.reference_split, False)


def read_split(ds: Dataset, split: str, base: Path | None = None):
    """The frames of ``split`` as one :class:`~egraff_lmp.trajectory.Trajectory` (files
    joined in order; molecules stored in a box are read as molecules)."""
    from .io import read_trajectory
    from .trajectory import ConcatTrajectory, as_molecule

    parts = [read_trajectory(p) for p in split_files(ds, split, base)]
    traj = parts[0] if len(parts) == 1 else ConcatTrajectory(parts)
    return traj if ds.periodic else as_molecule(traj)
