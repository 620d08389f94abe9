"""The datasets of the EGraFFBench study, as a registry of local files.

Each :class:`Dataset` names its species, the temperature (K) and MD timestep (fs) the study
simulated it at, the spacing of its reference frames (fs; ``None`` when the frames are not a
time-contiguous trajectory) and its splits (lists of files, joined in order). Files are looked
up, in order, under ``$EGRAFF_LMP_DATA``, ``~/.cache/egraff-lmp/datasets`` and the source
tree's ``inputs/`` (which ships GeTe and acetylacetone). ``fetch(name)`` downloads a dataset
from the study's Zenodo record (10678029), checking the MD5 sums the record itself lists.

Splits: ``test`` holds the frames of the static errors and, unless a ``trajectory`` split
joins more of the same run (GeTe: test then val), the reference of the simulations.

``provenance`` says where each number comes from; values the study's ESI would fix but that
could not be checked offline are marked "unverified" there and should be set in the
evaluation config when they matter.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import EgraffError
from .resources import examples_dir

ZENODO_RECORD = "10678029"
ZENODO_API = "https://zenodo.org/api/records/"


@dataclass(frozen=True)
class Dataset:
    """One dataset: species, simulation settings (K, fs) and split files."""

    name: str
    species: tuple[str, ...]
    temperature: float
    timestep_fs: float
    frame_spacing_fs: float | None
    splits: dict = field(default_factory=dict)
    periodic: bool = True
    zenodo_key: str = ""
    role: str = ""
    provenance: str = ""

    @property
    def contiguous(self) -> bool:
        return self.frame_spacing_fs is not None

    def with_overrides(self, **kw) -> Dataset:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


_MD17 = ("MD17 (Chmiela et al. 2017) as prepared by MDsim/EGraFFBench: DFT MD at 500 K, 0.5 fs "
         "between frames; the study's zero-shot set; temperature/timestep unverified against "
         "the study's ESI")

_MD17_SPECIES = {"aspirin": ("C", "H", "O"), "ethanol": ("C", "H", "O"),
                 "naphthalene": ("C", "H"), "salicylic_acid": ("C", "H", "O"),
                 "benzene": ("C", "H")}

REGISTRY: dict[str, Dataset] = {d.name: d for d in [
    *(Dataset(f"md17_{molecule}", species, 500.0, 0.5, 0.5,
              {"test": [f"md17/{molecule}/test.npz"]}, periodic=False, zenodo_key="md17",
              role="zero-shot", provenance=_MD17)
      for molecule, species in _MD17_SPECIES.items()),
    Dataset("3bpa", ("C", "H", "N", "O"), 300.0, 0.5, None,
            {"test": ["3bpa/test_300K.xyz"], "test_600K": ["3bpa/test_600K.xyz"],
             "test_1200K": ["3bpa/test_1200K.xyz"]}, periodic=False, zenodo_key="3bpa",
            role="out-of-distribution: trained at 300 K, simulated at 600 K",
            provenance="BOTNet datasets (Kovács et al. 2021): DFT on decorrelated MD "
                       "geometries at 300/600/1200 K, not a trajectory; timestep unverified"),
    Dataset("acetylacetone", ("C", "H", "O"), 300.0, 0.5, None,
            {"test": ["acac/acac_test_300K.xyz"], "test_600K": ["acac/acac_test_600K.xyz"]},
            periodic=False, zenodo_key="acac",
            role="out-of-distribution: trained at 300 K, simulated at 600 K",
            provenance="BOTNet datasets (davkovacs/BOTNet-datasets 29e6d46): PBE+D3 on "
                       "decorrelated 300 K xTB-MD geometries (inputs/acac ships the 300 K "
                       "test set); timestep unverified"),
    Dataset("lips", ("Li", "P", "S"), 520.0, 1.0, None,
            {"test": ["lips/test.npz"]}, zenodo_key="lips",
            role="in-distribution crystal",
            provenance="Li6.75P3S11, AIMD (Batzner et al. 2022, Fu et al. 2023); temperature "
                       "and timestep unverified"),
    Dataset("lips20", ("Li", "P", "S"), 3000.0, 1.0, None,
            {"test": ["lips20/test.npz"]}, zenodo_key="LiPS20",
            role="unseen crystal structures and compositions (larger cells than trained on)",
            provenance="LiPS20 (Li-P-S compositions, AIMD at 3000 K as the study's "
                       "Datasets/All_LiPS20/*/3000K directories name it); timestep unverified"),
    Dataset("gete", ("Ge", "Te"), 920.0, 1.19, 1.19,
            {"test": ["gete/gete_test.npz"],
             "trajectory": ["gete/gete_test.npz", "gete/gete_val.npz"]}, zenodo_key="GeTe",
            role="liquid, Car-Parrinello MD",
            provenance="GeTe4 CPMD (EGraFFBench GeTe split, inputs/gete/README): frame "
                       "spacing 1.19 fs and T 910-950 K estimated from the data itself "
                       "(not stored in the files); the test split continues into val"),
]}


def data_roots() -> list[Path]:
    """Where dataset files are looked for, first match wins."""
    roots = []
    if os.environ.get("EGRAFF_LMP_DATA"):
        roots.append(Path(os.environ["EGRAFF_LMP_DATA"]))
    roots.append(Path.home() / ".cache" / "egraff-lmp" / "datasets")
    roots.append(examples_dir())
    return roots


def get(name: str) -> Dataset:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise EgraffError(f"unknown dataset '{name}'{hint}; known: {', '.join(REGISTRY)}") \
            from None


def locate(relpath: str, base: Path | None = None) -> Path | None:
    """The first existing ``relpath`` under ``base`` (if given) or the data roots."""
    p = Path(relpath).expanduser()
    if p.is_absolute():
        return p if p.exists() else None
    for root in ([base] if base else []) + data_roots():
        if (root / p).exists():
            return (root / p).resolve()
    return None


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
        raise EgraffError(f"dataset {ds.name}: {missing[0]} not found under {where}; "
                          f"run 'egraff-lmp datasets fetch {ds.name}' or set EGRAFF_LMP_DATA")
    return found


def available(ds: Dataset) -> bool:
    return all(locate(rel) for rel in ds.splits.get("test", []))


# -- download --------------------------------------------------------------------------
def _get_json(url: str, timeout: float):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - https only
        return json.load(r)


def fetch(name: str, dest: Path | None = None, timeout: float = 20.0) -> list[Path]:
    """Download ``name``'s files from Zenodo record 10678029 into ``dest`` (default: the
    first data root), checking each file's MD5 against the record; returns the paths."""
    ds = get(name)
    dest = Path(dest or data_roots()[0])
    url = os.environ.get("EGRAFF_LMP_ZENODO_API", ZENODO_API) + ZENODO_RECORD
    try:
        record = _get_json(url, timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EgraffError(f"cannot reach Zenodo record {ZENODO_RECORD} ({url}): {reason}; "
                          f"this machine looks offline. Copy the {name} files into {dest} "
                          "by hand (see 'egraff-lmp datasets')") from None
    files = [f for f in record.get("files", [])
             if ds.zenodo_key.lower() in f.get("key", "").lower()]
    if not files:
        raise EgraffError(f"Zenodo record {ZENODO_RECORD} has no file matching "
                          f"'{ds.zenodo_key}' for dataset {name}")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        target = dest / f["key"]
        algo, _, want = f.get("checksum", "md5:").partition(":")
        h = hashlib.new(algo or "md5")
        tmp = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(f["links"]["self"], timeout=timeout) as r, \
                    open(tmp, "wb") as fh:  # noqa: S310
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    h.update(chunk)
                    fh.write(chunk)
        except (urllib.error.URLError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise EgraffError(f"download of {f['key']} failed: {exc}") from None
        if want and h.hexdigest() != want:
            tmp.unlink(missing_ok=True)
            raise EgraffError(f"{f['key']}: checksum mismatch ({algo} {h.hexdigest()} != "
                              f"{want}); nothing kept")
        tmp.replace(target)
        if target.suffix in (".zip", ".gz", ".tgz", ".tar", ".xz"):
            import shutil

            shutil.unpack_archive(target, dest)
        out.append(target)
    return out
