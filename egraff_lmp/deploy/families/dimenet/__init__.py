"""DimeNet++ (``torch_geometric.nn.models.DimeNetPlusPlus``, PyG 2.8) as an energy model.

The family in six parts, each a module:

- :mod:`.pyg`: PyG imported without what its import does to torch process-wide;
- :mod:`.basis`: PyG's spherical basis without sympy at run time (bit for bit PyG's);
- :mod:`.triplets`: the triplets ``k->j->i`` on explicit edges with periodic shifts;
- :mod:`.model`: :class:`DimeNetPPEnergy` (PyG's forward on the edges it is given: per-atom
  energies, eV, from positions and shifts, Å), its per-type scale and offsets
  (:class:`DimeNetPPAtomEnergy`) and its :func:`reach` (``(num_blocks + 1) * cutoff``);
- :mod:`.reference`: the parity reference, PyG's own forward with two narrow shims
  (:func:`reference_energy`, :class:`DimeNetReference`);
- :mod:`.files`: egraff-lmp's DimeNet++ file and OCP/MDsim checkpoints, read into a
  :class:`DimeNetFile`; :mod:`.adapter`: ``load(path, species=None) -> Source``.
"""

from __future__ import annotations

from .adapter import FAMILY, NAME, STAGES_UNAVAILABLE, load
from .basis import SphericalBasis, SphericalTables, sympy_tables
from .files import FORMAT, DimeNetFile, read
from .model import DimeNetPPAtomEnergy, DimeNetPPEnergy, reach
from .pyg import import_pyg
from .reference import DimeNetReference, image_cluster, reference_energy
from .triplets import triplets_of

__all__ = ["FAMILY", "NAME", "STAGES_UNAVAILABLE", "load", "SphericalBasis",
           "SphericalTables", "sympy_tables", "FORMAT", "DimeNetFile", "read",
           "DimeNetPPAtomEnergy", "DimeNetPPEnergy", "reach", "import_pyg",
           "DimeNetReference", "image_cluster", "reference_energy", "triplets_of"]
