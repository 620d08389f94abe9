"""The DimeNet++ family adapter: a DimeNet++ file (:mod:`.files`) as a ``Source``."""

from __future__ import annotations

from ....errors import located
from .. import Source, registry
from .files import read
from .model import DimeNetPPAtomEnergy, DimeNetPPEnergy, reach
from .pyg import import_pyg
from .reference import DimeNetReference

FAMILY = registry.of_module(__name__)  # accepts --species: OCP/MDsim checkpoints record none
NAME = FAMILY.name
STAGES_UNAVAILABLE = "DimeNet++ passes messages along edges: no per-atom stages"


def load(path, species=None) -> Source:
    """A DimeNet++ file (egraff-lmp's format or an OCP/MDsim checkpoint) as a ``Source``."""
    torch_geometric = import_pyg()
    f = read(path, species)
    model, z, scale, e0 = f.model, f.species.numbers, f.scale, f.e0
    try:
        net = DimeNetPPEnergy(model, z)
    except ValueError as exc:
        raise located(path, str(exc)) from None
    energy = DimeNetPPAtomEnergy(net.to(f.dtype), scale, e0)
    cutoff, blocks = float(model.cutoff), int(model.num_blocks)
    extra = dict(f.extra)
    extra.update({"max_num_neighbors": int(model.max_num_neighbors),
                  "versions": {"torch_geometric": torch_geometric.__version__}})
    return Source(
        family=NAME, energy_model=energy, type_names=list(f.species.symbols), r_max=cutoff,
        num_layers=blocks, strictly_local=False, dtype=f.dtype,
        family_version=torch_geometric.__version__,
        reference=lambda: DimeNetReference(model, z, scale, e0, reach(blocks, cutoff)),
        stages_unavailable=STAGES_UNAVAILABLE, reach=reach(blocks, cutoff), extra=extra)
