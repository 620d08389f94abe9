"""Equiformer's MD17 model (``GraphAttentionTransformerMD17``, Liao & Smidt 2023), the
architecture of every Equiformer run of the EGraFFBench study, re-expressed on e3nn.

Written from the study's code (M3RG-IITD/MDBENCHGNN at e4ee1e9,
``mdbenchgnn/models/equiformer/nets/``, MIT) read for its facts; its modules and attributes
carry the same names, so the study's checkpoints (``{'state_dict'}``) load key for key. Only
the MD17 configuration is reproduced: exp-normal radial basis with a cosine cutoff,
non-linear messages, equivariant layer norm, no attention head, no dropout (inference).

Conventions: the caller gives the edges. An edge e = (src, dst) carries a message from src
to dst and its vector ``edge_vec = pos[src] - pos[dst]`` (Å; the model is not mirror
symmetric: its l = 1 harmonics are labelled even, so the sign matters). :class:`EquiformerMD17`
returns one output per atom (the model's energy unit, before the study's ``mean + std ·``
scaling) whose sum is the original's energy: the readout's per-atom values over
√18.03 (QM9's average atom count, hard-coded by the original). Tested against the original's
own numbers (tests/data/equiformer, tests/test_equiformer.py).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.math import normalize2mom

AVG_NUM_NODES = 18.03065905448718  # the study's readout divides by its square root (QM9's)
AVG_DEGREE = 15.57930850982666  # ... and the degree embedding
MAX_ATOM_TYPE = 64


def sort_even_first(irreps: o3.Irreps):
    """Irreps sorted by l, even before odd, and the permutation p (old index -> new)."""
    keyed = sorted((ir.l, -ir.p, i, mul) for i, (mul, ir) in enumerate(irreps))
    inv = [i for _, _, i, _ in keyed]
    p = [0] * len(inv)
    for new, old in enumerate(inv):
        p[old] = new
    return o3.Irreps([(mul, (deg, -neg_p)) for deg, neg_p, _, mul in keyed]), p


def gate_irreps(irreps: o3.Irreps):
    scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0 and ir.p == 1]).simplify()
    gated = o3.Irreps([(m, ir) for m, ir in irreps if not (ir.l == 0 and ir.p == 1)]).simplify()
    gates = o3.Irreps([(m, "0e") for m, _ in gated]).simplify() if gated.dim > 0 else o3.Irreps("")
    return scalars, gates, gated


def _fc_instructions(i1: o3.Irreps, i2: o3.Irreps, io: o3.Irreps):
    return [(a, b, c, "uvw", True, 1.0) for a, (_, r1) in enumerate(i1)
            for b, (_, r2) in enumerate(i2) for c, (_, ro) in enumerate(io) if ro in r1 * r2]


class TensorProductBias(torch.nn.Module):
    """An e3nn TensorProduct without path normalisation, plus a bias on each 0e block of
    the (simplified) output (the original's TensorProductRescale at inference)."""

    def __init__(self, irreps_in1, irreps_in2, irreps_out, instructions=None, bias=True,
                 internal_weights=None, shared_weights=None):
        super().__init__()
        self.irreps_in1, self.irreps_in2 = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2)
        self.irreps_out = o3.Irreps(irreps_out)
        if instructions is None:  # fully connected
            instructions = _fc_instructions(self.irreps_in1, self.irreps_in2, self.irreps_out)
        self.tp = o3.TensorProduct(self.irreps_in1, self.irreps_in2, self.irreps_out,
                                   instructions, internal_weights=internal_weights,
                                   shared_weights=shared_weights, path_normalization="none")
        self.bias = torch.nn.ParameterList()
        self.bias_at: list[tuple[int, int]] = []
        if bias:
            simple = self.irreps_out.simplify()
            for (mul, ir), sl in zip(simple, simple.slices()):
                if ir.l == 0 and ir.p == 1:
                    self.bias.append(torch.nn.Parameter(torch.zeros(mul)))
                    self.bias_at.append((sl.start, sl.stop - sl.start))

    def tp_bias(self, x, y, weight: torch.Tensor | None = None):
        out = self.tp(x, y, weight)
        k = 0
        for b in self.bias:
            start, length = self.bias_at[k]
            k += 1
            out = torch.cat([out.narrow(1, 0, start), out.narrow(1, start, length) + b,
                             out.narrow(1, start + length, out.shape[1] - start - length)], 1)
        return out

    def forward(self, x, y, weight: torch.Tensor | None = None):
        return self.tp_bias(x, y, weight)


def fully_connected(irreps_in1, irreps_in2, irreps_out, bias=True):
    return TensorProductBias(irreps_in1, irreps_in2, irreps_out, None, bias)


class Linear(TensorProductBias):
    """A fully connected linear map of irreps with biases (the original's LinearRS)."""

    def __init__(self, irreps_in, irreps_out, bias=True):
        super().__init__(irreps_in, "1x0e", irreps_out, None, bias)

    def forward(self, x):
        return self.tp_bias(x, torch.ones_like(x[:, 0:1]), None)


def depthwise(irreps_in, irreps_edge, irreps_wanted, internal_weights=False, bias=True):
    irreps_in, irreps_edge = o3.Irreps(irreps_in), o3.Irreps(irreps_edge)
    wanted = o3.Irreps(irreps_wanted)
    out, ins = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_edge) in enumerate(irreps_edge):
            for ir_out in ir_in * ir_edge:
                if ir_out in wanted or ir_out == o3.Irrep(0, 1):
                    ins.append((i, j, len(out), "uvu", True))
                    out.append((mul, ir_out))
    out, p = sort_even_first(o3.Irreps(out))
    ins = [(a, b, p[c], m, t) for a, b, c, m, t in ins]
    return TensorProductBias(irreps_in, irreps_edge, out, ins, bias=bias,
                             internal_weights=internal_weights, shared_weights=internal_weights)


class Radial(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        layers = []
        for k in range(1, len(channels)):
            last = k == len(channels) - 1
            layers.append(torch.nn.Linear(channels[k - 1], channels[k], bias=not last))
            if not last:
                layers += [torch.nn.LayerNorm(channels[k]), torch.nn.SiLU()]
        self.net = torch.nn.Sequential(*layers)
        self.offset = torch.nn.Parameter(torch.zeros(channels[-1]))

    def forward(self, x):
        return self.net(x) + self.offset.reshape(1, -1)


class Activation(torch.nn.Module):
    """Scalar activations normalised to unit second moment (e3nn's normalize2mom), one per
    block of scalars (one for all of them where there is one block)."""

    def __init__(self, irreps, acts):
        super().__init__()
        irreps = o3.Irreps(irreps)
        self.acts = torch.nn.ModuleList([normalize2mom(a) for a in acts])
        self.segments: list[tuple[int, int]] = []
        at = 0
        for mul, ir in irreps:
            self.segments.append((at, mul))
            at += mul * ir.dim

    def forward(self, x):
        if len(self.segments) == 1:
            return self.acts[0](x)
        out = []
        for k, act in enumerate(self.acts):
            at, mul = self.segments[k]
            out.append(act(x.narrow(-1, at, mul)))
        return torch.cat(out, -1)


class Gate(torch.nn.Module):
    def __init__(self, scalars, gates, gated):
        super().__init__()
        self.scalars_dim, self.gates_dim = scalars.dim, gates.dim
        self.act_scalars = Activation(scalars, [torch.nn.SiLU() for _ in scalars])
        self.act_gates = Activation(gates, [torch.nn.Sigmoid() for _ in gates])
        self.mul = o3.ElementwiseTensorProduct(gated, gates)
        self.irreps_in = (scalars + gates + gated).simplify()

    def forward(self, x):
        s = x.narrow(-1, 0, self.scalars_dim)
        g = x.narrow(-1, self.scalars_dim, self.gates_dim)
        rest = x.narrow(-1, self.scalars_dim + self.gates_dim,
                        x.shape[-1] - self.scalars_dim - self.gates_dim)
        s = self.act_scalars(s)
        if g.shape[-1]:
            return torch.cat([s, self.mul(rest, self.act_gates(g))], -1)
        return s


def swish_gate(irreps):
    scalars, gates, gated = gate_irreps(o3.Irreps(irreps))
    if gated.num_irreps == 0:
        return Activation(irreps, [torch.nn.SiLU()]), o3.Irreps(irreps)
    g = Gate(scalars, gates, gated)
    return g, g.irreps_in


class FCTPGate(TensorProductBias):
    """A fully connected tensor product into a swish gate's input, then the gate."""

    def __init__(self, irreps_in1, irreps_in2, irreps_out):
        gate, gate_in = swish_gate(irreps_out)
        super().__init__(irreps_in1, irreps_in2, gate_in, None, True)
        self.gate = gate

    def forward(self, x, y):
        return self.gate(self.tp_bias(x, y, None))


class LayerNorm(torch.nn.Module):
    """Equivariant layer norm per node (EquivariantLayerNormV2, 'component')."""

    def __init__(self, irreps, eps=1e-5):
        super().__init__()
        irreps = o3.Irreps(irreps)
        self.eps = eps
        self.fields: list[tuple[int, int, bool]] = [(mul, ir.dim, ir.l == 0 and ir.p == 1)
                                                    for mul, ir in irreps]
        n_scalar = sum(m for m, d, scalar in self.fields if scalar)
        self.affine_weight = torch.nn.Parameter(torch.ones(irreps.num_irreps))
        self.affine_bias = torch.nn.Parameter(torch.zeros(n_scalar))

    def forward(self, x):
        out = []
        ix, iw, ib = 0, 0, 0
        for mul, d, scalar in self.fields:
            f = x.narrow(1, ix, mul * d).reshape(-1, mul, d)
            ix += mul * d
            if scalar:
                f = f - f.mean(dim=1, keepdim=True)
            n = f.pow(2).mean(-1).mean(dim=1, keepdim=True)
            n = (n + self.eps).pow(-0.5) * self.affine_weight[iw:iw + mul].unsqueeze(0)
            iw += mul
            f = f * n.reshape(-1, mul, 1)
            if scalar:
                f = f + self.affine_bias[ib:ib + mul].reshape(mul, 1)
                ib += mul
            out.append(f.reshape(-1, mul * d))
        return torch.cat(out, -1)


class SmoothLeakyReLU(torch.nn.Module):
    def __init__(self, slope=0.2):
        super().__init__()
        self.alpha = slope

    def forward(self, x):
        return (1 + self.alpha) / 2 * x + (1 - self.alpha) / 2 * x * (2 * torch.sigmoid(x) - 1)


class Separable(torch.nn.Module):
    def __init__(self, irreps_in, irreps_edge, irreps_out, fc_neurons, activation,
                 internal_weights):
        super().__init__()
        self.dtp = depthwise(irreps_in, irreps_edge, irreps_out, internal_weights, bias=False)
        if fc_neurons is not None:
            self.dtp_rad = Radial(fc_neurons + [self.dtp.tp.weight_numel])
        lin_out = o3.Irreps(irreps_out)
        if activation:
            s, g, gd = gate_irreps(lin_out)
            lin_out = (s + g + gd).simplify()
            self.gate, _ = swish_gate(irreps_out)
        self.lin = Linear(self.dtp.irreps_out.simplify(), lin_out)

    def forward(self, x, edge_attr, edge_scalars: torch.Tensor | None = None):
        weight: torch.Tensor | None = None
        if hasattr(self, "dtp_rad") and edge_scalars is not None:
            weight = self.dtp_rad(edge_scalars)
        return self.lin(self.dtp(x, edge_attr, weight))


def split_heads(irreps, heads):
    idx, at = [], 0
    for mul, ir in irreps:
        idx.append((at, mul * heads * ir.dim))
        at += mul * heads * ir.dim
    return idx


class GraphAttention(torch.nn.Module):
    """Non-linear messages (the study's models): alpha from the depthwise TP's output, value
    through a gate and a second depthwise TP; softmax over each node's incoming edges."""

    def __init__(self, irreps, irreps_edge, fc_neurons, irreps_head, heads):
        super().__init__()
        irreps, irreps_head = o3.Irreps(irreps), o3.Irreps(irreps_head)
        self.merge_src = Linear(irreps, irreps, bias=True)
        self.merge_dst = Linear(irreps, irreps, bias=False)
        attn_heads = sort_even_first(irreps_head * heads)[0].simplify()
        mul_alpha = sum(m for m, ir in attn_heads if ir.l == 0 and ir.p == 1)
        self.mul_alpha_head = mul_alpha // heads
        self.heads = heads
        self.sep_act = Separable(irreps, irreps_edge, irreps, fc_neurons, True, False)
        self.sep_alpha = Linear(self.sep_act.dtp.irreps_out, f"{mul_alpha}x0e")
        self.sep_value = Separable(irreps, irreps_edge, attn_heads, None, False, True)
        self.alpha_idx = split_heads(o3.Irreps(f"{self.mul_alpha_head}x0e"), heads)
        self.value_idx = split_heads(irreps_head, heads)
        self.head_idx = [(s // heads, n // heads) for s, n in self.value_idx]
        self.alpha_act = Activation(f"{self.mul_alpha_head}x0e", [SmoothLeakyReLU(0.2)])
        self.alpha_dot = torch.nn.Parameter(torch.zeros(1, heads, self.mul_alpha_head))
        self.proj = Linear(attn_heads, irreps)

    def _to_heads(self, x, idx: list[tuple[int, int]]):
        """[E, blocks] -> [E, heads, per-head blocks] (the original's Vec2AttnHeads)."""
        parts = []
        for s, n in idx:
            parts.append(x.narrow(1, s, n).reshape(x.shape[0], self.heads, n // self.heads))
        return torch.cat(parts, 2)

    def forward(self, x, edge_src, edge_dst, edge_attr, edge_scalars):
        message = self.merge_src(x)[edge_src] + self.merge_dst(x)[edge_dst]
        message = self.sep_act.dtp(message, edge_attr, self.sep_act.dtp_rad(edge_scalars))
        alpha = self._to_heads(self.sep_alpha(message), self.alpha_idx)
        value = self.sep_act.gate(self.sep_act.lin(message))
        value = self._to_heads(self.sep_value(value, edge_attr), self.value_idx)
        alpha = torch.einsum("bik,aik->bi", self.alpha_act(alpha), self.alpha_dot)
        n = x.shape[0]
        top = torch.full((n, self.heads), float("-inf"), dtype=alpha.dtype).scatter_reduce(
            0, edge_dst[:, None].expand_as(alpha), alpha, "amax", include_self=True)
        w = (alpha - top[edge_dst]).exp()
        total = torch.zeros((n, self.heads), dtype=alpha.dtype).index_add(0, edge_dst, w)
        alpha = (w / (total[edge_dst] + 1e-16)).unsqueeze(-1)
        attn = torch.zeros((n, value.shape[1], value.shape[2]), dtype=value.dtype,
                           device=value.device).index_add(0, edge_dst, value * alpha)
        parts = []
        for s, k in self.head_idx:
            parts.append(attn.narrow(2, s, k).reshape(n, -1))
        attn = torch.cat(parts, 1)
        return self.proj(attn)


class FeedForward(torch.nn.Module):
    def __init__(self, irreps_in, irreps_attr, irreps_out, irreps_mid):
        super().__init__()
        self.fctp_1 = FCTPGate(irreps_in, irreps_attr, irreps_mid)
        self.fctp_2 = fully_connected(irreps_mid, irreps_attr, irreps_out, True)

    def forward(self, x, attr):
        return self.fctp_2(self.fctp_1(x, attr), attr)


class Block(torch.nn.Module):
    def __init__(self, irreps, irreps_edge, irreps_out, fc_neurons, irreps_head, heads,
                 irreps_mid):
        super().__init__()
        self.norm_1 = LayerNorm(irreps)
        self.ga = GraphAttention(irreps, irreps_edge, fc_neurons, irreps_head, heads)
        self.norm_2 = LayerNorm(irreps)
        self.ffn = FeedForward(irreps, "1x0e", irreps_out, irreps_mid)
        if o3.Irreps(irreps) != o3.Irreps(irreps_out):
            self.ffn_shortcut = fully_connected(irreps, "1x0e", irreps_out, True)

    def forward(self, x, attr, edge_src, edge_dst, edge_attr, edge_scalars):
        out = x + self.ga(self.norm_1(x), edge_src, edge_dst, edge_attr, edge_scalars)
        f = self.ffn(self.norm_2(out), attr)
        if hasattr(self, "ffn_shortcut"):
            out = self.ffn_shortcut(out, attr)
        return out + f


class ExpNormal(torch.nn.Module):
    def __init__(self, cutoff, n):
        super().__init__()
        self.cutoff = cutoff
        start = math.exp(-cutoff)
        self.register_buffer("means", torch.linspace(start, 1, n))
        self.register_buffer("betas", torch.tensor([(2 / n * (1 - start)) ** -2] * n))
        self.alpha = 5.0 / cutoff

    def forward(self, d):
        d = d.unsqueeze(-1)
        c = 0.5 * (torch.cos(d * math.pi / self.cutoff) + 1.0) * (d < self.cutoff).to(d.dtype)
        return c * torch.exp(-self.betas * (torch.exp(self.alpha * -d) - self.means) ** 2)


class NodeEmbedding(torch.nn.Module):
    def __init__(self, irreps):
        super().__init__()
        self.max_atom_type = MAX_ATOM_TYPE
        self.atom_type_lin = Linear(f"{MAX_ATOM_TYPE}x0e", irreps, True)

    def forward(self, z, dtype: torch.dtype):
        return self.atom_type_lin(
            torch.nn.functional.one_hot(z, self.max_atom_type).to(dtype))


class DegreeEmbedding(torch.nn.Module):
    def __init__(self, irreps, irreps_edge, fc_neurons):
        super().__init__()
        self.exp = Linear("1x0e", irreps, True)
        self.dw = depthwise(irreps, irreps_edge, irreps, False, bias=False)
        self.rad = Radial(fc_neurons + [self.dw.tp.weight_numel])
        self.proj = Linear(self.dw.irreps_out.simplify(), irreps)
        self.norm = AVG_DEGREE ** 0.5

    def forward(self, x, edge_attr, edge_scalars, edge_src, edge_dst):
        h = self.exp(torch.ones_like(x.narrow(1, 0, 1)))
        e = self.proj(self.dw(h[edge_src], edge_attr, self.rad(edge_scalars)))
        out = torch.zeros((x.shape[0], e.shape[1]), dtype=e.dtype).index_add(0, edge_dst, e)
        return out / self.norm


class EquiformerMD17(torch.nn.Module):
    def __init__(self, irreps_node_embedding="128x0e+64x1e+32x2e", num_layers=6,
                 irreps_sh="1x0e+1x1e+1x2e", max_radius=5.0, number_of_basis=128,
                 fc_neurons=(64, 64), irreps_feature="512x0e", irreps_head="32x0e+16x1e+8x2e",
                 num_heads=4, irreps_mlp_mid="384x0e+192x1e+96x2e", **ignored):
        super().__init__()
        fc = [number_of_basis] + list(fc_neurons)
        self.max_radius = max_radius
        # l = 0, 1, 2 as the original computes them (it labels them 0e + 1e + 2e)
        self.sh = o3.SphericalHarmonics([0, 1, 2], True, normalization="component")
        self.atom_embed = NodeEmbedding(irreps_node_embedding)
        self.rbf = ExpNormal(max_radius, number_of_basis)
        self.edge_deg_embed = DegreeEmbedding(irreps_node_embedding, irreps_sh, fc)
        self.blocks = torch.nn.ModuleList([
            Block(irreps_node_embedding, irreps_sh,
                  irreps_feature if k == num_layers - 1 else irreps_node_embedding, fc,
                  irreps_head, num_heads, irreps_mlp_mid) for k in range(num_layers)])
        self.norm = LayerNorm(irreps_feature)
        self.readout_norm = AVG_NUM_NODES ** 0.5
        self.head = torch.nn.Sequential(Linear(irreps_feature, irreps_feature),
                                        Activation(irreps_feature, [torch.nn.SiLU()]),
                                        Linear(irreps_feature, "1x0e"))

    def forward(self, z, edge_src, edge_dst, edge_vec):
        """Per-atom outputs (the model's energy unit before mean/std) from edges src -> dst
        with vectors pos[src] - pos[dst]."""
        sh = self.sh(edge_vec)
        x = self.atom_embed(z, edge_vec.dtype)
        rbf = self.rbf(torch.linalg.norm(edge_vec, dim=1))
        x = x + self.edge_deg_embed(x, sh, rbf, edge_src, edge_dst)
        attr = torch.ones_like(x.narrow(1, 0, 1))
        for blk in self.blocks:
            x = blk(x, attr, edge_src, edge_dst, sh, rbf)
        return self.head(self.norm(x))[:, 0] / self.readout_norm
