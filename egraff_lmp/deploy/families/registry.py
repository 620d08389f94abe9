"""The families egraff-lmp deploys: one :class:`Family` record each, in :data:`FAMILIES`.

Everything that needs the family list reads it from here, when it needs it: the sniffer's
map from the packages a file refers to onto a family and its content markers
(:mod:`..sniff`), ``deploy``'s lookups and its error messages (:mod:`egraff_lmp.deploy`),
the ``--family`` choices (:mod:`egraff_lmp.commands.deploy`) and the adapters' own names.
Adding a family is one record here and its adapter module ``families/<name>`` (a module or
a package) providing ``load(path) -> Source`` (``load(path, species=None)`` where
``accepts_species``).

No adapter is imported here: an adapter is imported when a model of its family is loaded
(:attr:`Family.adapter`). (Importing this module runs ``egraff_lmp.deploy``'s, which imports
torch: the command line reads the names only when it needs them.)
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Family:
    """What egraff-lmp knows about a family before it loads any of its models."""

    name: str  # the --family value and the adapter module's name (families/<name>)
    title: str  # the family in prose: "a {title} model"
    packages: tuple[str, ...]  # top-level Python packages a model file of it refers to
    suffixes: tuple[str, ...] = ()  # file-name endings it claims when content says nothing
    accepts_species: bool = False  # its files may record no species: load takes species=
    extra: str | None = None  # the pip extra that installs its packages (None: a core one)
    install_note: str = ""  # what the extra alone does not install
    markers: tuple[str, ...] = ()  # regular expressions matching a whole string in a pickle
    #: extra files of a TorchScript archive that make it one of this family's
    torchscript_extra_files: frozenset[str] = frozenset()
    #: the names its adapter writes as the artifact's family, where not only ``name``
    artifact_families: tuple[str, ...] = ()
    module: str = ""  # the adapter module (default: this package's ``<name>``)

    @property
    def adapter_module(self) -> str:
        return self.module or f"{__package__}.{self.name}"

    @property
    def adapter(self):
        """The adapter module (imported on first use)."""
        return importlib.import_module(self.adapter_module)

    @cached_property
    def marker_patterns(self) -> tuple[re.Pattern, ...]:
        return tuple(re.compile(m, re.S) for m in self.markers)

    @property
    def model(self) -> str:
        """``a {title} model``, the subject of the family's error messages."""
        return f"a {self.title} model"

    @property
    def install(self) -> str:
        """How to install what loading its models needs."""
        if self.extra is None:
            return "reinstall egraff-lmp (a core dependency is missing)"
        return f"pip install 'egraff-lmp[{self.extra}]'" + (
            f" ({self.install_note})" if self.install_note else "")

    def claims(self, path) -> bool:
        """Whether the file name alone says it is this family's (cheap, no reading)."""
        return bool(self.suffixes) and str(path).endswith(self.suffixes)

    def writes(self, artifact_family: str) -> bool:
        """Whether an artifact whose metadata says ``artifact_family`` came from here."""
        return artifact_family == self.name or artifact_family in self.artifact_families

    def load(self, path, species=None):
        """The adapter's :class:`~egraff_lmp.deploy.families.Source` of the file at ``path``
        (``species``: element symbols in model order, for families that take them); a
        missing package of the family is one line naming how to install it."""
        from ...errors import located

        try:
            load = self.adapter.load
            return load(path, species=species) if self.accepts_species else load(path)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in self.packages or self.extra is None:
                raise
            raise located(path, f"{self.model} needs the package {top}, which is not "
                                f"installed: {self.install}") from None


# one record per family, in the order they are listed to users
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("mace", "MACE", packages=("mace",), suffixes=(".mace-state.pt", ".model"),
           markers=(r"egraff_lmp_mace_state",)),  # egraff-lmp's MACE state file
    Family("nequip", "NequIP/Allegro", packages=("nequip", "allegro"),
           suffixes=(".ckpt", ".nequip.zip"),
           torchscript_extra_files=frozenset({"type_names", "r_max", "num_types"}),
           artifact_families=("allegro",)),
    Family("torchmd", "TorchMD-Net", packages=("torchmdnet",), accepts_species=True,
           extra="torchmd",
           markers=(r"model\.representation_model\..*",)),  # a torchmd-train state_dict key
    Family("dimenet", "DimeNet++", packages=("torch_geometric",), accepts_species=True,
           extra="dimenet",
           markers=(r"(?i)dimenetplusplus|dimenet\+\+",)),  # an OCP/MDsim config, egraff's file
    Family("schnetpack", "SchNetPack", packages=("schnetpack",), accepts_species=True,
           extra="schnetpack", install_note="then pip install --no-deps schnetpack==2.1.1"),
)}


def names() -> list[str]:
    """The family names, as ``--family`` takes them."""
    return list(FAMILIES)


def listed() -> str:
    """The family names as prose lists them: ``mace, nequip, ...``."""
    return ", ".join(FAMILIES)


def get(name: str, path=None) -> Family:
    """The family called ``name``; one line naming the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        from ...errors import EgraffError, located

        text = f"unknown family '{name}' (known: {listed()})"
        raise (located(path, text) if path is not None else EgraffError(text)) from None


def of_artifact(artifact_family: str) -> Family | None:
    """The family whose adapter writes ``artifact_family`` into an artifact's metadata
    (``allegro`` is the nequip family's)."""
    return next((f for f in FAMILIES.values() if f.writes(artifact_family)), None)


def of_module(module_name: str) -> Family:
    """The family whose adapter is (or contains) the module ``module_name``."""
    for f in FAMILIES.values():
        if module_name == f.adapter_module or module_name.startswith(f.adapter_module + "."):
            return f
    raise LookupError(f"{module_name} is no family's adapter")


def package_map() -> dict[str, str]:
    """Top-level package -> the family name of the files that refer to it."""
    return {p: f.name for f in FAMILIES.values() for p in f.packages}
