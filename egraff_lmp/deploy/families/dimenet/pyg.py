"""PyG imported for DimeNet++, without what its import does to torch process-wide."""

from __future__ import annotations

import torch


def import_pyg():
    """``torch_geometric``, imported without what its import does to torch process-wide.

    PyG 2.8 replaces ``torch.index_select`` and ``torch.select`` for the whole process with
    Python functions aware of its ``HashTensor``; TorchScript cannot compile them, so after
    ``import torch_geometric`` scripting any model that calls ``torch.index_select``
    (NequIP, Allegro) fails. egraff-lmp never uses ``HashTensor``: torch's own functions
    are put back (PyG keeps them as ``_old_index_select``/``_old_select``), whoever
    imported PyG first. Every use of PyG here goes through this function."""
    import torch_geometric
    import torch_geometric.hash_tensor as patched
    import torch_geometric.nn.models.dimenet  # noqa: F401 - loaded here, once

    for name in ("index_select", "select"):
        new, old = getattr(patched, f"_new_{name}", None), getattr(patched, f"_old_{name}", None)
        if old is not None and getattr(torch, name) is new:
            setattr(torch, name, old)
    return torch_geometric

