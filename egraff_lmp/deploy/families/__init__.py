"""Family adapters: each turns a trained model into an energy model + its metadata.

Every family is one record in :mod:`.registry` (its name, the packages its files are
sniffed by, suffixes, whether it takes ``--species``, the pip extra that installs it); its
adapter, the module ``families/<name>``, provides ``load(path) -> Source`` (``load(path,
species=None)`` where the record ``accepts_species``: element symbols). ``Source`` carries
the energy model (per-atom energies, eV, from positions (Å), types, edges and shifts (Å))
and what the artifact's metadata needs. ``reference(head=None)`` builds the family's own ASE
calculator (with that head, for multi-head models).

What several adapters do is written once: species resolution (:mod:`.species`), the
refusals of what an artifact cannot reproduce (:mod:`.refuse`), per-type energy scales and
offsets (:mod:`.offsets`) and the base of the hand-written parity references
(:mod:`.reference`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Source:
    family: str  # "mace", "nequip", "allegro", "torchmd", ...
    energy_model: torch.nn.Module
    type_names: list[str]  # element symbols in model order
    r_max: float  # Å
    num_layers: int  # message-passing layers (1 for strictly local models)
    strictly_local: bool  # True: ghost atoms need only r_max (Allegro)
    dtype: torch.dtype
    family_version: str
    reference: Callable[[], object] | None = None  # the family's own ASE calculator
    stages: torch.nn.Module | None = None  # the model cut into layers (message passing)
    stages_unavailable: str | None = None  # why a message-passing model has no stages
    extra: dict = field(default_factory=dict)
    reach: float | None = None  # Å: the family's own reach where it is not r_max x layers
    reference_min_width: float = 0.0  # Å: cells the family's own code accepts are this wide
    # the model's heads (multi-head MACE), in the order of its readouts; None: no heads.
    # The energy model (and stages) then hold the schema's ATTR_HEAD buffer, shared.
    heads: list[str] | None = None
    default_head: str | None = None  # the head used where none is asked for, if any

    @property
    def ghost_cutoff(self) -> float:
        """How far (Å) ghost atoms must reach beyond the local ones: how far from a local
        atom another atom can change its energy."""
        if self.reach is not None:
            return self.reach
        return self.r_max if self.strictly_local else self.r_max * self.num_layers


class StagingUnsupported(Exception):
    """The model has a part the staged (per-layer) path does not reproduce; the message
    names it. The artifact is then written without stages (one-call path only)."""
