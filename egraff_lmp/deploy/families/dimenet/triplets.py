"""The triplets ``k->j->i`` of DimeNet++ on explicit edges with periodic shifts.

A triplet pairs the edge ``f = (j, k)`` (PyG's ``idx_kj``) with ``e = (i, j)``
(``idx_ji``), i.e. every edge ``f`` centred on ``e``'s neighbour; it is dropped when ``k``
is ``i`` itself — the same atom *and* the same image: ``b_f == a_e`` and ``shift_e +
shift_f == 0`` (exact: opposite images have exactly opposite shifts, Å). With zero shifts
this is PyG's ``idx_i != idx_k``, in PyG's order.
"""

from __future__ import annotations

import torch
from torch import Tensor


def triplets_of(a: Tensor, b: Tensor, shift: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``(idx_kj, idx_ji)`` of all triplets ``k->j->i``: edge ``e = (i, j)`` with every edge
    ``f = (j, k)`` centred on its neighbour, except ``k`` = ``i`` in the same image.

    Ordered as PyG's ``triplets``: by ``e``, then by ``(centre, neighbour)`` of ``f``.
    """
    num_edges = a.size(0)
    order = torch.argsort(a * num_nodes + b, stable=True)
    counts = torch.bincount(a, minlength=num_nodes)
    ptr = torch.cumsum(counts, 0) - counts
    per_edge = counts[b]
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=a.device), per_edge)
    first = torch.cumsum(per_edge, 0) - per_edge
    offset = torch.arange(idx_ji.size(0), device=a.device) - first[idx_ji]
    idx_kj = order[ptr[b[idx_ji]] + offset]
    s = shift.detach()
    back = (b[idx_kj] == a[idx_ji]) & (s[idx_kj] + s[idx_ji] == 0).all(dim=-1)
    keep = ~back
    return idx_kj[keep], idx_ji[keep]
