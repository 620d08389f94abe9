"""A model's species, in model order, with one wording for every family.

A family either records its species in its files (MACE, NequIP, egraff-lmp's DimeNet++
file) or embeds atomic numbers and records none (TorchMD-Net, SchNetPack, an OCP/MDsim
DimeNet++): those take ``--species``, else the training data the file names, where it
names one. :func:`resolve` picks, in that order, the file's own list, ``--species`` and the
training data, and refuses in one line what is not a list of distinct elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import located

EXAMPLE = "Ge,Te"


@dataclass(frozen=True)
class Species:
    """Element symbols and atomic numbers in model type order, and where they came from
    (the artifact's ``species_from``)."""

    symbols: list[str]
    numbers: list[int]
    where: str


def element_numbers(path, symbols, what: str = "--species") -> list[int]:
    """Atomic numbers of ``symbols`` (distinct element symbols; ``what`` names the list in
    the error)."""
    from ase.data import atomic_numbers

    if not isinstance(symbols, (list, tuple)) or not symbols:
        raise located(path, f"{what}: no species list")
    bad = [str(s) for s in symbols if not isinstance(s, str) or s not in atomic_numbers
           or atomic_numbers[s] == 0]
    if bad:
        raise located(path, f"{what}: {', '.join(bad)} not element symbols")
    if len(set(symbols)) != len(symbols):
        raise located(path, f"{what}: repeated species {', '.join(symbols)}")
    return [atomic_numbers[s] for s in symbols]


def element_symbols(path, numbers, what: str) -> list[str]:
    """Element symbols of the atomic numbers ``numbers``."""
    from ase.data import chemical_symbols

    bad = [v for v in numbers if not 0 < v < len(chemical_symbols)]
    if bad:
        raise located(path, f"{what} {bad} are not elements")
    return [chemical_symbols[v] for v in numbers]


def refuse_given(path, model: str, recorded=None):
    """``--species`` for a model that records its own species: one line."""
    listed = f" ({','.join(recorded)})" if recorded else ""
    order = " or give them in that order" if recorded else ""
    raise located(path, f"{model} records its own species{listed}: drop --species{order}")


def resolve(path, model: str, given=None, *, recorded=None, recorded_where="the file",
            found: Callable[[], tuple[list[int], str] | None] | None = None,
            searched: str = "") -> Species:
    """The species of ``model`` (``"a TorchMD-Net model"``, the subject of the errors):
    the file's own list ``recorded`` (``given`` must then be absent or equal), else
    ``given`` (``--species``), else ``found()`` (atomic numbers and where from: the
    training data), else one line asking for ``--species`` (``searched``: what was looked
    for, e.g. ``"nor training data found"``)."""
    if recorded is not None:
        numbers = element_numbers(path, recorded, "the file's species")
        if given and list(given) != list(recorded):
            refuse_given(path, "the file", recorded)
        return Species(list(recorded), numbers, recorded_where)
    if given:
        return Species(list(given), element_numbers(path, list(given)), "--species")
    hit = found() if found is not None else None
    if hit is None:
        why = f" ({searched})" if searched else ""
        raise located(path, f"{model} embeds atomic numbers and records no species{why}: "
                            f"give --species, e.g. --species {EXAMPLE}")
    numbers, where = hit
    return Species(element_symbols(path, numbers, "the training data's atomic numbers"),
                   list(numbers), where)
