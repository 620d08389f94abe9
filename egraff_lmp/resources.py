"""Files that ship inside the package: the LAMMPS plugin's sources and the example inputs.

The project keeps them at the top of its repository (``deploy/plugin``, ``inputs/``); the
wheel maps them into the package as ``egraff_lmp/_plugin`` and ``egraff_lmp/_examples``
(``pyproject.toml``, ``[tool.setuptools.package-dir]``). An installed package finds them
there; a checkout (``pip install -e .``) finds them in the repository.
"""

from __future__ import annotations

from pathlib import Path

from .errors import EgraffError

PACKAGE = Path(__file__).resolve().parent


def _find(packaged: str, checkout: str, what: str) -> Path:
    for d in (PACKAGE / packaged, PACKAGE.parent / checkout):
        if d.is_dir():
            return d
    raise EgraffError(f"{what} not found in {PACKAGE / packaged} nor {PACKAGE.parent / checkout}"
                      ": reinstall egraff-lmp")


def plugin_sources() -> Path:
    """The C++/CMake sources of ``pair_style egraff``."""
    return _find("_plugin", "deploy/plugin", "the LAMMPS plugin's sources")


def examples_dir() -> Path:
    """The example inputs, models and reference data (``inputs/`` of the repository)."""
    return _find("_examples", "inputs", "the example inputs")
