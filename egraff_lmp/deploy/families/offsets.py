"""Per-type affine energy offsets: ``e_i -> scale * e_i + shift[type_i]`` (eV).

What TorchMD-Net (``std`` and an ``Atomref`` prior), SchNetPack (``AddOffsets``' extensive
mean and atom references) and DimeNet++ (an OCP normalizer's std, egraff-lmp's per-element
reference energies) add to a network's per-atom output, in one scriptable module. The
arithmetic is each family's own: the output cast to ``dtype``, times the scale where there
is one, plus the shift of the atom's model type.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PerTypeAffine(torch.nn.Module):
    """``e.to(dtype) * scale + shift[types]``: per-atom energies (eV) from a network's
    per-atom output ``e`` [N] and the model types [N]. ``scale``: a number or a tensor
    (None: no multiplication); ``shift_of_type``: eV per model type."""

    __constants__ = ["scaled"]

    def __init__(self, scale, shift_of_type: Sequence[float] | torch.Tensor,
                 dtype: torch.dtype):
        super().__init__()
        self.scaled = scale is not None
        self.register_buffer("scale", _tensor(1.0 if scale is None else scale, dtype))
        self.register_buffer("shift", _tensor(shift_of_type, dtype))

    def forward(self, e: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        e = e.to(self.shift.dtype)
        if self.scaled:
            e = e * self.scale
        return e + self.shift[types]


def _tensor(value, dtype: torch.dtype) -> torch.Tensor:
    """``value`` (a tensor, a number or numbers) in ``dtype``; numbers are read as float64
    (torch's default dtype may be float32)."""
    if torch.is_tensor(value):
        return value.detach().clone().to(dtype)
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=torch.float64).to(dtype)
    return torch.tensor([float(v) for v in value], dtype=torch.float64).to(dtype)
