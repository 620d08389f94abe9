/* pair_style egraff, the staged driver (mode staged; deploy/README.md, "Stages"):
   check_stages() at pair_style, compute_staged() every step.

   Layer 0's features follow from the types of all atoms; before each later layer the local
   atoms' features x_k are copied to their ghosts by a forward communication. Every layer
   keeps its autograd graph; the backward pass runs the layers in reverse with
   torch::autograd::grad (the vector-Jacobian product of the layer's outputs x_{k+1},
   h_{k+1} and energy), adds -dE/dpos to the forces of local and ghost atoms, and sums the
   ghosts' gradients of x_k onto their owners with a reverse communication before layer
   k-1. Ghost forces go home through LAMMPS' own reverse communication; the virial is
   sum(r_i x f_i) over local and ghost atoms.

   The same backward is written in Python for deploy's staging check
   (egraff_lmp/deploy/stages.py, staged_domains()). It is not one scripted vector-Jacobian
   method of the artifact that both call, on purpose: such a method can only recompute the
   layer from its inputs (a TorchScript method cannot take the autograd graph of an earlier
   call as an argument and run backward through it any cheaper than torch::autograd::grad
   here), and recomputing every layer in the backward pass made mode staged 1.14-1.57x
   slower at 200 atoms, up to 1.49x at 5,400, with the shipped MACE and NequIP on 1 and 2
   ranks (bench/staged_bench.py's runs for issue 17: docs/plugin.md, "Sources and the
   schema"); and the artifacts already deployed have no such method, so this backward would
   have to stay as their fallback anyway. Both drivers are tested against the one-call
   evaluation (tests/test_staged.py).

   A compiled package (egraff_lmp/deploy/compiled_stages.py) has no autograd: each layer is
   two programs, PROGRAM_LAYER_FW k (the outputs and the tensors its backward reads) and
   PROGRAM_LAYER_BW k (the vector-Jacobian product from them), called with PAD dummy local
   atoms inserted after the local ones (every count >= 2); the driver is the same, only the
   calls differ (tests/test_plugin_compiled.py). */

#include "pair_egraff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

using namespace LAMMPS_NS;
using namespace EgraffSchema;

namespace {

constexpr int PAD = 2;    // dummy local atoms of a compiled stage call

// t with PAD zero rows inserted before row n, and without them again
torch::Tensor insert_rows(const torch::Tensor &t, int64_t n)
{
  std::vector<int64_t> shape = t.sizes().vec();
  shape[0] = PAD;
  return torch::cat({t.slice(0, 0, n), torch::zeros(shape, t.options()), t.slice(0, n)});
}

torch::Tensor drop_rows(const torch::Tensor &t, int64_t n)
{
  return torch::cat({t.slice(0, 0, n), t.slice(0, n + PAD)});
}

}    // namespace

/* A compiled package's stages: stage 0 and two programs per layer. */

void PairEgraff::load_compiled_stages()
{
  auto load = [&](const std::string &name) {
    try {
      return std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          artifact, name, false, 1, device.is_cuda() ? device.index() : (c10::DeviceIndex) -1);
    } catch (const std::exception &e) {
      error->all(FLERR, "pair_style egraff: the compiled package {} says it has stages but its program {} does not load ({}): compile it again",
                 artifact, name, std::string(e.what()).substr(0, 200));
    }
    return std::unique_ptr<torch::inductor::AOTIModelPackageLoader>();
  };
  package_embed = load(METHOD_STAGE_EMBED);
  for (int k = 0; k < stage_layers; k++) {
    package_fw.push_back(load(PROGRAM_LAYER_FW + std::to_string(k)));
    package_bw.push_back(load(PROGRAM_LAYER_BW + std::to_string(k)));
  }
}

/* Stage 0 for the types of all atoms: x0, h0, e0. */

std::vector<torch::Tensor> PairEgraff::run_embed(const torch::Tensor &types)
{
  if (!package) {
    auto emb = model.get_method(METHOD_STAGE_EMBED)({types}).toTuple();
    return {emb->elements()[0].toTensor(), emb->elements()[1].toTensor(), emb->elements()[2].toTensor()};
  }
  const int64_t n = types.size(0);
  auto out = package_embed->run({torch::cat({types, torch::zeros({PAD}, types.options())})});
  return {out[0].slice(0, 0, n), out[1].slice(0, 0, n), out[2].slice(0, 0, n)};
}

/* The stages on one atom without neighbours: the widths the model really exchanges must be
   those of the metadata (a mismatch would make the exchange read the wrong numbers). */

void PairEgraff::check_stages()
{
  if (!package && (!model.find_method(METHOD_STAGE_EMBED) || !model.find_method(METHOD_STAGE_LAYER)))
    error->all(FLERR, "pair_style egraff: {} says it has stages but its model has no {}/{}: deploy it again",
               artifact, METHOD_STAGE_EMBED, METHOD_STAGE_LAYER);
  torch::NoGradGuard no_grad;
  torch::jit::GraphOptimizerEnabledGuard graph_optimisation(optimize_graph);
  EgraffDefaultDtype default_dtype(model_dtype);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor types = torch::zeros({1}, i64.device(device));
  torch::Tensor pos = torch::zeros({1, 3}, f64.device(device));
  torch::Tensor edges = torch::zeros({2, 0}, i64.device(device));
  torch::Tensor shifts = torch::zeros({0, 3}, f64.device(device));
  // the widths each layer reads (and, last, what the last layer returns), then the checks:
  // error->all throws, so it is never called inside the try
  std::vector<int64_t> widths;
  try {
    auto emb = run_embed(types);
    torch::Tensor x = emb[0];
    torch::Tensor h = emb[1];
    for (int k = 0; k < stage_layers; k++) {
      widths.push_back(x.size(1));
      if (x.size(1) != feature_widths[k]) break;
      if (package) {
        std::vector<torch::Tensor> in = pad_inputs(pos, types, edges, shifts, 1, r_max);
        in.push_back(insert_rows(x, 1));
        in.push_back(insert_rows(h, 1));
        auto out = package_fw[k]->run(in);
        x = out[0].slice(0, 0, 1);
        h = out[1].slice(0, 0, 1);
      } else {
        auto out = model.get_method(METHOD_STAGE_LAYER)({(int64_t) k, pos, types, edges, shifts, x, h}).toTuple();
        x = out->elements()[0].toTensor();
        h = out->elements()[1].toTensor();
      }
    }
    if ((int) widths.size() == stage_layers) widths.push_back(x.size(1));
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: the stages of {} do not run: {}", artifact,
               std::string(e.what()).substr(0, 200));
  }
  for (int k = 0; k < stage_layers && k < (int) widths.size(); k++)
    if (widths[k] != feature_widths[k])
      error->all(FLERR, "pair_style egraff: stage metadata of {} does not match its model: layer {} reads {} features, the metadata says {}; deploy it again",
                 artifact, k, (int) widths[k], feature_widths[k]);
  if (widths.back() != 0)
    error->all(FLERR, "pair_style egraff: stage metadata of {} does not match its model: it has more than {} layers; deploy it again",
               artifact, stage_layers);
}

/* One step of the staged path: the inputs of every chunk, and what each layer saved for
   the backward pass (layer k, chunk c at k * nchunk + c). */

struct PairEgraff::StagedStep {
  int nlocal = 0, ntotal = 0, nchunk = 0;
  bool whole = true;    // one chunk holding every atom of the rank
  std::vector<torch::Tensor> pos, types, edge_index, shift, members, centres;    // per chunk
  std::vector<torch::Tensor> x_in, h_in, x_out, h_out, e_out;                  // per layer, chunk
  // a compiled package: per chunk its padded pos, types, edges, shifts; per layer and chunk
  // the backward program's inputs (the forward's inputs and what it saved)
  std::vector<std::vector<torch::Tensor>> padded, saved;
  std::vector<double> energy;    // per local atom, eV
};

/* The buffer of layer k's exchange (features x_k, or their gradients) for all atoms, zeroed,
   as a float64 tensor [ntotal, w_k] over the pair style's comm_buf. */

torch::Tensor PairEgraff::exchange_buffer(int k, int ntotal)
{
  const int w = feature_widths[k];
  exchange.assign((size_t) ntotal * w, 0.0);
  comm_buf = exchange.data();
  comm_width = w;
  return torch::from_blob(exchange.data(), {ntotal, w}, torch::TensorOptions().dtype(torch::kFloat64));
}

/* Layer k's exchanges (collective: every rank takes part): the local atoms' x_k to their
   ghosts before layer k, the ghosts' gradients of x_k summed onto their owners after its
   vector-Jacobian product. skip_exchange (tests only) leaves one out. */

void PairEgraff::forward_features(int k)
{
  if (skip_exchange != k) comm->forward_comm(this, comm_width);
}

void PairEgraff::reverse_gradients(int k)
{
  if (skip_exchange != k) comm->reverse_comm(this, comm_width);
}

/* A rank without atoms (a molecule in vacuum on many ranks): no model call, but every
   exchange is collective, so take part in each with nothing to add. */

double PairEgraff::staged_without_atoms()
{
  const int ntotal = atom->nlocal + atom->nghost;
  for (int k = 1; k < stage_layers; k++) {
    exchange_buffer(k, ntotal);
    forward_features(k);
  }
  for (int k = stage_layers - 1; k >= 1; k--) {
    exchange_buffer(k, ntotal);
    reverse_gradients(k);
  }
  comm_buf = nullptr;
  return 0.0;
}

/* The chunks (spatial chunks of about chunk_atoms centres on large ranks, else one chunk
   holding every atom of the rank) and their input tensors. */

void PairEgraff::staged_inputs(StagedStep &s)
{
  double **x = atom->x;
  int *type = atom->type;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  s.whole = !(chunk_atoms > 0 && s.nlocal > chunk_atoms);    // chunk 0 = every atom
  if (!s.whole)
    EgraffGraph::build_chunks(x, s.nlocal, s.ntotal, chunk_atoms, graph, chunks);
  else
    EgraffGraph::one_chunk(s.nlocal, s.ntotal, graph, chunks);
  const int nchunk = s.nchunk = chunks.size();
  for (auto *v : {&s.pos, &s.types, &s.edge_index, &s.shift, &s.members, &s.centres})
    v->assign(nchunk, torch::Tensor());
  for (int c = 0; c < nchunk; c++) {
    std::vector<int> &atoms = chunks.atoms[c];
    const int na = (int) atoms.size();
    torch::Tensor pos = torch::empty({na, 3}, f64);
    torch::Tensor types = torch::empty({na}, i64);
    auto p = pos.accessor<double, 2>();
    auto t = types.accessor<int64_t, 1>();
    for (int a = 0; a < na; a++) {
      const int i = atoms[a];
      for (int d = 0; d < 3; d++) p[a][d] = x[i][d] / length_unit;    // Å
      t[a] = type_map[type[i]];
    }
    s.pos[c] = pos.to(device).requires_grad_(!package);
    s.types[c] = types.to(device);
    EgraffGraph::Edges &e = chunks.edges[c];
    s.edge_index[c] = torch::from_blob(e.index.data(), {e.size(), 2}, i64).t().contiguous().to(device);
    // per-atom virials: the layers' gradients with respect to the edge vectors too
    s.shift[c] = torch::zeros({e.size(), 3}, f64.device(device)).requires_grad_(atom_virial && !package);
    s.members[c] = torch::from_blob(atoms.data(), {na}, torch::kInt32).to(device, torch::kInt64);
    s.centres[c] = s.members[c].slice(0, 0, chunks.n_center[c]);
  }
  if (package) {
    s.padded.assign(nchunk, {});
    for (int c = 0; c < nchunk; c++)
      s.padded[c] = pad_inputs(s.pos[c].detach(), s.types[c], s.edge_index[c], s.shift[c], chunks.n_center[c], r_max);
  }
}

/* Forward, layer by layer and chunk by chunk, keeping every chunk's autograd graph; the
   features x_{k+1} of the local atoms go to their ghosts between layers. */

void PairEgraff::staged_forward(StagedStep &s)
{
  const int nlocal = s.nlocal, ntotal = s.ntotal, nchunk = s.nchunk;
  const bool whole = s.whole;
  int *type = atom->type;
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  s.energy.assign(nlocal, 0.0);
  torch::Tensor xk, hk;    // x_k of all atoms, h_k of the local atoms
  {
    torch::NoGradGuard no_grad;
    torch::Tensor all_types = torch::empty({ntotal}, i64);
    auto t = all_types.accessor<int64_t, 1>();
    for (int i = 0; i < ntotal; i++) t[i] = type_map[type[i]];
    auto emb = run_embed(all_types.to(device));
    xk = emb[0];
    hk = emb[1].slice(0, 0, nlocal);
    torch::Tensor e0 = emb[2].to(torch::kCPU).contiguous();
    const double *e = e0.data_ptr<double>();
    for (int i = 0; i < nlocal; i++) s.energy[i] += e[i];
  }

  const size_t nsaved = (size_t) stage_layers * nchunk;
  for (auto *v : {&s.x_in, &s.h_in, &s.x_out, &s.h_out, &s.e_out})
    v->assign(nsaved, torch::Tensor());
  if (package) s.saved.assign(nsaved, {});
  for (int k = 0; k < stage_layers; k++) {
    torch::Tensor x_next, h_next;
    for (int c = 0; c < nchunk; c++) {
      const size_t i = (size_t) k * nchunk + c;
      const bool grad = k > 0 && !package;
      s.x_in[i] = (whole ? xk : xk.index_select(0, s.members[c])).detach().requires_grad_(grad);
      s.h_in[i] = (whole ? hk : hk.index_select(0, s.centres[c])).detach().requires_grad_(grad);
      if (package) {
        const int64_t n = chunks.n_center[c];
        std::vector<torch::Tensor> &in = s.saved[i];
        in = s.padded[c];
        in.push_back(insert_rows(s.x_in[i], n));
        in.push_back(insert_rows(s.h_in[i], n));
        std::vector<torch::Tensor> out = package_fw[k]->run(in);
        s.x_out[i] = out[0].slice(0, 0, n);
        s.h_out[i] = out[1].slice(0, 0, n);
        s.e_out[i] = out[2].slice(0, 0, n);
        in.insert(in.end(), out.begin() + 3, out.end());
      } else {
        auto out = model.get_method(METHOD_STAGE_LAYER)({(int64_t) k, s.pos[c], s.types[c], s.edge_index[c], s.shift[c], s.x_in[i], s.h_in[i]})
                       .toTuple();
        s.x_out[i] = out->elements()[0].toTensor();
        s.h_out[i] = out->elements()[1].toTensor();
        s.e_out[i] = out->elements()[2].toTensor();
      }
      torch::Tensor ek = s.e_out[i].detach().to(torch::kCPU).contiguous();
      const double *e = ek.data_ptr<double>();
      for (int a = 0; a < chunks.n_center[c]; a++) s.energy[chunks.atoms[c][a]] += e[a];
      if (k + 1 < stage_layers) {
        if (s.x_out[i].size(1) != feature_widths[k + 1])
          error->one(FLERR, "pair_style egraff: layer {} of {} returned {} features per atom, the metadata says {}",
                     k, artifact, (int) s.x_out[i].size(1), feature_widths[k + 1]);
        if (whole) {
          x_next = s.x_out[i].detach();
          h_next = s.h_out[i].detach();
        } else {
          if (!x_next.defined()) {
            x_next = torch::empty({nlocal, s.x_out[i].size(1)}, s.x_out[i].options());
            h_next = torch::empty({nlocal, s.h_out[i].size(1)}, s.h_out[i].options());
          }
          x_next.index_copy_(0, s.centres[c], s.x_out[i].detach());
          h_next.index_copy_(0, s.centres[c], s.h_out[i].detach());
        }
      }
    }
    if (k + 1 < stage_layers) {
      // forward communication: the local atoms' x_{k+1} to their ghosts
      torch::Tensor buf = exchange_buffer(k + 1, ntotal);
      buf.slice(0, 0, nlocal).copy_(x_next);    // from the device, if any
      forward_features(k + 1);
      xk = buf.to(device, model_dtype, false, true);
      hk = h_next;
    }
  }
}

/* Layer k's vector-Jacobian product for chunk c, given the cotangents of x_{k+1} and h_{k+1}
   of the local atoms (undefined after the last layer): {g_pos, g_h_k, g_x_k} (the last two
   for k > 0 only; undefined where nothing depends on them). Scripted: autograd on the
   graph the forward kept; compiled: the layer's backward program on what its forward saved. */

std::vector<torch::Tensor> PairEgraff::scripted_vjp(StagedStep &s, int k, int c,
                                                    const torch::Tensor &g_x, const torch::Tensor &g_h)
{
  const size_t i = (size_t) k * s.nchunk + c;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  std::vector<torch::Tensor> outputs, cotangents;
  torch::Tensor esum = s.e_out[i].sum();
  if (esum.requires_grad()) {
    outputs.push_back(esum);
    cotangents.push_back(torch::ones({}, f64.device(device)));
  }
  if (g_x.defined() && s.x_out[i].requires_grad() && s.x_out[i].numel()) {
    outputs.push_back(s.x_out[i]);
    cotangents.push_back(s.whole ? g_x : g_x.index_select(0, s.centres[c]));
  }
  if (g_h.defined() && s.h_out[i].requires_grad()) {
    outputs.push_back(s.h_out[i]);
    cotangents.push_back(s.whole ? g_h : g_h.index_select(0, s.centres[c]));
  }
  std::vector<torch::Tensor> inputs{s.pos[c]};
  if (k > 0) {
    inputs.push_back(s.h_in[i]);
    inputs.push_back(s.x_in[i]);
  }
  if (atom_virial) inputs.push_back(s.shift[c]);    // last: dE/dr_ij of this layer's edges
  std::vector<torch::Tensor> grads(inputs.size());
  if (!outputs.empty()) grads = torch::autograd::grad(outputs, inputs, cotangents, false, false, true);
  return grads;
}

std::vector<torch::Tensor> PairEgraff::compiled_vjp(StagedStep &s, int k, int c,
                                                    const torch::Tensor &g_x, const torch::Tensor &g_h)
{
  const size_t i = (size_t) k * s.nchunk + c;
  const int64_t n = chunks.n_center[c];
  std::vector<torch::Tensor> in = std::move(s.saved[i]);    // freed after this call
  if (k + 1 < stage_layers) {
    in.push_back(insert_rows(s.whole ? g_x : g_x.index_select(0, s.centres[c]), n));
    in.push_back(insert_rows(s.whole ? g_h : g_h.index_select(0, s.centres[c]), n));
  }
  std::vector<torch::Tensor> out = package_bw[k]->run(in);
  if (k == 0) return {drop_rows(out[0], n)};
  return {drop_rows(out[0], n), out[2].slice(0, 0, n), drop_rows(out[1], n)};
}

/* Backward, layer by layer: vector-Jacobian products of each chunk's outputs; -dE/dpos onto
   the forces (and the virial) of local and ghost atoms, the ghosts' gradients of x_k home
   before layer k-1. */

void PairEgraff::staged_backward(StagedStep &s)
{
  const int nlocal = s.nlocal, ntotal = s.ntotal, nchunk = s.nchunk;
  double **f = atom->f;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor g_x, g_h;    // gradients of x_{k+1} (local; owners' sums) and of h_{k+1}
  for (int k = stage_layers - 1; k >= 0; k--) {
    torch::Tensor g_x_all, g_h_all;
    if (k > 0) {
      g_x_all = exchange_buffer(k, ntotal);
      g_h_all = torch::zeros({nlocal, s.h_in[(size_t) k * nchunk].size(1)}, f64.device(device));
    }
    for (int c = 0; c < nchunk; c++) {
      const size_t i = (size_t) k * nchunk + c;
      std::vector<torch::Tensor> grads = package ? compiled_vjp(s, k, c, g_x, g_h) : scripted_vjp(s, k, c, g_x, g_h);
      s.x_in[i] = s.h_in[i] = s.x_out[i] = s.h_out[i] = s.e_out[i] = torch::Tensor();    // free the graph
      if (package) s.saved[i].clear();
      if (grads[0].defined()) {
        torch::Tensor gp = grads[0].to(torch::kCPU).contiguous();
        const double *g = gp.data_ptr<double>();
        const std::vector<int> &m = chunks.atoms[c];
        for (size_t a = 0; a < m.size(); a++)
          for (int d = 0; d < 3; d++) f[m[a]][d] -= g[3 * a + d] * force_unit;
        tally_virial(m, g, -force_unit);
      }
      if (atom_virial && grads.back().defined()) {
        torch::Tensor ge = grads.back().to(torch::kCPU, torch::kFloat64).contiguous();
        tally_atom_virial(chunks.atoms[c], chunks.edges[c], ge.data_ptr<double>());
      }
      if (k > 0) {
        if (grads[1].defined()) g_h_all.index_copy_(0, s.centres[c], grads[1].to(torch::kFloat64));
        if (grads[2].defined())
          g_x_all.index_add_(0, s.members[c].to(torch::kCPU), grads[2].to(torch::kCPU, torch::kFloat64));
      }
    }
    if (k == 0) break;
    // reverse communication: the ghosts' gradients of x_k summed onto their owners
    reverse_gradients(k);
    g_x = g_x_all.slice(0, 0, nlocal).to(device, model_dtype, false, true);
    g_h = g_h_all.to(model_dtype);
  }
}

/* The staged path: adds the forces of local and ghost atoms, the per-atom energies and the
   virial; returns the local energy (eV). */

double PairEgraff::compute_staged()
{
  StagedStep s;
  s.nlocal = atom->nlocal;
  s.ntotal = s.nlocal + atom->nghost;
  if (s.nlocal == 0) return staged_without_atoms();
  staged_inputs(s);
  staged_forward(s);
  staged_backward(s);
  comm_buf = nullptr;

  double elocal = 0.0;
  for (int i = 0; i < s.nlocal; i++) {
    elocal += s.energy[i];
    if (eflag_atom) eatom[i] += s.energy[i] * energy_unit;
  }
  return elocal;
}
