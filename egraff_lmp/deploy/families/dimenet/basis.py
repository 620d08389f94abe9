"""PyG's ``SphericalBasisLayer`` without sympy at run time.

PyG builds the layer's functions with sympy ``lambdify`` (not scriptable).
:class:`SphericalBasis` reads the constants (Bessel zeros times normaliser, the
spherical-harmonic prefactors) from PyG's own sympy expressions
(``dimenet_utils.bessel_basis`` / ``real_sph_harm``, the same calls PyG makes) and
evaluates the same closed forms in the same order of operations, so it matches PyG's
lambdified functions bit for bit in float64 (checked against them on construction). The
closed forms of ``j_l`` are PyG's own: they lose digits by cancellation at small ``x = d /
cutoff`` for high ``l`` (as PyG's do; identical values, identical loss). Distances in Å.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from .pyg import import_pyg


@dataclass(frozen=True)
class SphericalTables:
    """The constants of PyG's spherical basis for ``num_spherical`` x ``num_radial``
    functions: per radial column (``l * num_radial + n``) its frequency, the coefficient
    and kind (sin: True) of its ``x**p`` term and the power of its denominator; per
    angular function ``l`` the coefficient of ``cos(t)**p`` and whether it is odd."""

    freq: list[float]
    rad_coef: list[list[float]]  # [power p][column]
    rad_sin: list[list[bool]]  # [power p][column]
    rad_den: list[int]  # [column]
    ang_coef: list[list[float]]  # [power p][l]
    ang_odd: list[bool]  # [l]


@functools.lru_cache(maxsize=8)
def sympy_tables(num_spherical: int, num_radial: int) -> SphericalTables:
    """Constants of PyG's ``SphericalBasisLayer`` from its own sympy expressions.

    Radial function ``(l, n)`` (column ``l * num_radial + n``) is, as PyG prints it,
    ``(sum_p c_p * x**p * trig_p(a * x)) / x**(l + 1)``, terms printed (and so evaluated by
    PyG) in descending ``p``;
    angular function ``l`` is ``sum_p a_p * cos(t)**p`` (even ``l``) or that times
    ``cos(t)`` (odd ``l``). Floats are taken as lambdify prints them (``str`` of the Float).
    """
    import sympy as sym
    import_pyg()
    from torch_geometric.nn.models.dimenet_utils import bessel_basis, real_sph_harm

    n, k = num_spherical, num_radial
    x, theta, c = sym.symbols("x theta c")
    bessel = bessel_basis(n, k)
    sph = real_sph_harm(n)

    freq = [0.0] * (n * k)
    rad_coef = [[0.0] * (n * k) for _ in range(n)]  # [power p][column]
    rad_sin = [[False] * (n * k) for _ in range(n)]
    rad_den = [0] * (n * k)
    for lo in range(n):
        for r in range(k):
            col = lo * k + r
            num, den = sym.fraction(bessel[lo][r])
            if sym.simplify(den - x ** (lo + 1)) != 0:
                raise ValueError(f"unexpected spherical Bessel form {bessel[lo][r]}")
            rad_den[col] = lo + 1
            for term in sym.Add.make_args(num):
                coef, rest = term.as_coeff_Mul()
                powers = rest.as_powers_dict()
                trig = [f for f in powers if isinstance(f, (sym.sin, sym.cos))]
                if len(trig) != 1 or set(powers) - {x, trig[0]} or powers[trig[0]] != 1:
                    raise ValueError(f"unexpected spherical Bessel term {term}")
                p = int(powers.get(x, 0))
                a = trig[0].args[0].coeff(x)
                if p >= n or rad_coef[p][col] != 0.0:
                    raise ValueError(f"unexpected spherical Bessel form {bessel[lo][r]}")
                if freq[col] == 0.0:
                    freq[col] = float(str(a))
                elif float(str(a)) != freq[col]:
                    raise ValueError(f"two frequencies in {bessel[lo][r]}")
                rad_coef[p][col] = float(str(coef))
                rad_sin[p][col] = isinstance(trig[0], sym.sin)

    ang_coef = [[0.0] * n for _ in range(n)]  # [power p][l]
    ang_odd = [False] * n
    for lo in range(n):
        expr = sym.sympify(sph[lo][0]).subs(sym.cos(theta), c)
        inner = expr
        if lo % 2 == 1:
            inner = sym.Mul(*[f for f in sym.Mul.make_args(expr) if f != c])
            if sym.expand(inner * c - expr) != 0:
                raise ValueError(f"unexpected spherical harmonic form {sph[lo][0]}")
            ang_odd[lo] = True
        for term in sym.Add.make_args(inner):
            coef, p = term.as_coeff_exponent(c)
            coef, p = sym.sympify(coef), int(p)
            if not coef.is_Number or p >= n or ang_coef[p][lo] != 0.0:
                raise ValueError(f"unexpected spherical harmonic form {sph[lo][0]}")
            ang_coef[p][lo] = float(str(coef))
    return SphericalTables(freq, rad_coef, rad_sin, rad_den, ang_coef, ang_odd)


class SphericalBasis(torch.nn.Module):
    """PyG's ``SphericalBasisLayer`` (same values, same order of operations), in torch."""

    def __init__(self, sbf: torch.nn.Module):
        super().__init__()
        self.num_spherical = int(sbf.num_spherical)
        self.num_radial = int(sbf.num_radial)
        self.cutoff = float(sbf.cutoff)
        self.envelope = sbf.envelope
        t = sympy_tables(self.num_spherical, self.num_radial)
        f64 = torch.float64
        self.register_buffer("freq", torch.tensor(t.freq, dtype=f64))
        self.register_buffer("rad_coef", torch.tensor(t.rad_coef, dtype=f64))
        self.register_buffer("rad_sin", torch.tensor(t.rad_sin, dtype=torch.bool))
        self.register_buffer("rad_den", torch.tensor(t.rad_den, dtype=torch.long))
        self.register_buffer("ang_coef", torch.tensor(t.ang_coef, dtype=f64))
        self.register_buffer("ang_odd", torch.tensor(t.ang_odd, dtype=torch.bool))
        self._check_against(sbf)

    def radial(self, x: Tensor) -> Tensor:
        """The normalised ``j_l(z_ln x)`` of ``x = d / cutoff``, ``[E, n * k]`` (no envelope)."""
        n = self.num_spherical
        u = x.unsqueeze(-1) * self.freq
        s, c = torch.sin(u), torch.cos(u)
        xp = [x.pow(p).unsqueeze(-1) for p in range(n + 1)]
        num = torch.zeros_like(u)
        for p in range(n - 1, -1, -1):
            num = num + self.rad_coef[p] * xp[p] * torch.where(self.rad_sin[p], s, c)
        return num / torch.cat(xp, dim=-1)[:, self.rad_den]

    def angular(self, angle: Tensor) -> Tensor:
        """``Y_l^0(angle)``, ``[T, n]``."""
        n = self.num_spherical
        cth = torch.cos(angle)
        acc = torch.zeros(angle.size(0), n, dtype=angle.dtype, device=angle.device)
        for p in range(n - 1, -1, -1):
            acc = acc + self.ang_coef[p] * cth.pow(p).unsqueeze(-1)
        return torch.where(self.ang_odd, acc * cth.unsqueeze(-1), acc)

    def forward(self, dist: Tensor, angle: Tensor, idx_kj: Tensor) -> Tensor:
        dist = dist / self.cutoff
        rbf = self.envelope(dist).unsqueeze(-1) * self.radial(dist)
        cbf = self.angular(angle)
        n, k = self.num_spherical, self.num_radial
        return (rbf[idx_kj].view(-1, n, k) * cbf.view(-1, n, 1)).view(-1, n * k)

    @torch.jit.unused
    def _check_against(self, sbf: torch.nn.Module) -> None:
        """Compare with PyG's lambdified functions in float64 (raise on disagreement)."""
        with torch.no_grad():
            x = torch.linspace(0.02, 1.0, 400, dtype=torch.float64)
            mine = self.radial(x)
            ref = torch.stack([f(x) for f in sbf.bessel_funcs], dim=1)
            t = torch.linspace(0.0, torch.pi, 400, dtype=torch.float64)
            mine_a = self.angular(t)
            ref_a = torch.stack([f(t) for f in sbf.sph_funcs], dim=1)
        for name, a, b in (("radial", mine, ref), ("angular", mine_a, ref_a)):
            scale = b.abs().amax(dim=0).clamp_min(1e-300)
            err = float(((a - b).abs() / scale).max())
            if not err <= 1e-9:
                raise ValueError(f"spherical basis ({name}) differs from PyG's: {err:.3g}")

