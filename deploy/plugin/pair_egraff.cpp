/* pair_style egraff: see pair_egraff.h. */

#include "pair_egraff.h"

#include "egraff_elements.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/cuda.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <mpi.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>

using namespace LAMMPS_NS;

PairEgraff::PairEgraff(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairEgraff::~PairEgraff()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairEgraff::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* pair_style egraff ARTIFACT [chunk N] [mode auto|images|ghosts|staged] [optimize yes|no]
   [device cpu|cuda|cuda:N] [skip_exchange K] */

void PairEgraff::settings(int narg, char **arg)
{
  const char *usage = "expected pair_style egraff ARTIFACT [chunk N] [mode auto|images|ghosts|staged] [optimize yes|no] [device cpu|cuda|cuda:N]";
  if (narg < 1 || narg % 2 == 0) error->all(FLERR, "Illegal pair_style egraff command: {}", usage);
  artifact = arg[0];
  chunk_atoms = DEFAULT_CHUNK_ATOMS;
  mode_request = AUTO;
  skip_exchange = -1;
  warned = false;
  optimize_graph = false;
  std::string device_name = "cpu";
  for (int a = 1; a < narg; a += 2) {
    if (strcmp(arg[a], "chunk") == 0) {
      chunk_atoms = utils::inumeric(FLERR, arg[a + 1], false, lmp);
      if (chunk_atoms < 0) error->all(FLERR, "pair_style egraff: chunk must be 0 (off) or a positive number of atoms");
    } else if (strcmp(arg[a], "mode") == 0) {
      const std::string m = arg[a + 1];
      if (m == "auto") mode_request = AUTO;
      else if (m == "images") mode_request = IMAGES;
      else if (m == "ghosts") mode_request = GHOSTS;
      else if (m == "staged") mode_request = STAGED;
      else error->all(FLERR, "pair_style egraff: unknown mode {} (auto, images, ghosts or staged)", m);
    } else if (strcmp(arg[a], "optimize") == 0) {
      optimize_graph = utils::logical(FLERR, arg[a + 1], false, lmp) == 1;
    } else if (strcmp(arg[a], "device") == 0) {
      device_name = arg[a + 1];
    } else if (strcmp(arg[a], "skip_exchange") == 0) {
      skip_exchange = utils::inumeric(FLERR, arg[a + 1], false, lmp);
    } else {
      error->all(FLERR, "Illegal pair_style egraff command: unknown keyword {}; {}", arg[a], usage);
    }
  }
  device = choose_device(device_name);
  std::unordered_map<std::string, std::string> extra{{"egraff_lmp.json", ""}};
  try {
    model = torch::jit::load(artifact, device, extra);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: cannot load artifact {}: not a complete TorchScript archive", artifact);
  }
  if (extra["egraff_lmp.json"].empty())
    error->all(FLERR, "pair_style egraff: {} is not an egraff-lmp artifact (no metadata)", artifact);
  json meta;
  stage_layers = 0;
  feature_widths.clear();
  try {
    meta = json::parse(extra["egraff_lmp.json"]);
    type_names = meta.at("type_names").get<std::vector<std::string>>();
    r_max = meta.at("r_max").get<double>();
    ghost_cutoff = meta.at("ghost_cutoff").get<double>();
    num_layers = meta.at("num_layers").get<int>();
    strictly_local = meta.at("strictly_local").get<bool>();
    const std::string dtype = meta.value("dtype", "float64");
    model_dtype = (dtype == "float32") ? torch::kFloat32 : torch::kFloat64;
    if (meta.contains("stages") && !meta["stages"].is_null()) {
      stage_layers = meta["stages"].at("layers").get<int>();
      feature_widths = meta["stages"].at("feature_widths").get<std::vector<int>>();
      if ((int) feature_widths.size() != stage_layers || stage_layers != num_layers)
        throw std::runtime_error("stages: layers and feature_widths disagree with num_layers");
    }
    if (meta.at("calling_convention").get<int>() != 1)
      error->all(FLERR, "pair_style egraff: {} uses calling convention {}, this plugin speaks 1",
                 artifact, meta.at("calling_convention").get<int>());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: corrupt metadata in {}: {}", artifact, e.what());
  }
  model.eval();
  if (mode_request == STAGED && stage_layers == 0) {
    std::string why = meta.value("stages_unavailable", std::string());
    if (strictly_local)
      error->all(FLERR, "pair_style egraff: {} is strictly local ({}): it has no message-passing stages; use mode auto or ghosts", artifact, meta.value("family", std::string("?")));
    error->all(FLERR, "pair_style egraff: mode staged asked for, but {} has no stages ({}): deploy it again with 'egraff-lmp deploy' or use mode ghosts",
               artifact, why.empty() ? "deployed without them" : why);
  }
  if (stage_layers > 0) check_stages();
  if (skip_exchange >= 0 && (skip_exchange < 1 || skip_exchange >= stage_layers))
    error->all(FLERR, "pair_style egraff: skip_exchange must name a layer 1..{} of a staged artifact", stage_layers - 1);
  // the largest feature width travels in LAMMPS' forward and reverse communication (set
  // here, where pair_style hybrid reads it)
  comm_forward = comm_reverse = 0;
  for (int w : feature_widths) comm_forward = comm_reverse = MAX(comm_forward, w);
  // the virial is always the plugin's own (the model's, or sum r x f of the forces it adds):
  // set here, where pair_style hybrid reads it, so that hybrid never sums r x f over the
  // forces of every style after egraff has folded images onto their owners
  no_virial_fdotr_compute = 1;
}

/* device cpu | cuda | cuda:N. cuda: one GPU per rank, the rank's index among the ranks of
   its node modulo the GPUs it sees. */

torch::Device PairEgraff::choose_device(const std::string &name)
{
  if (name == "cpu") return torch::Device(torch::kCPU);
  if (name != "cuda" && name.rfind("cuda:", 0) != 0)
    error->all(FLERR, "pair_style egraff: unknown device {} (cpu, cuda or cuda:N)", name);
  if (!torch::cuda::is_available())
    error->all(FLERR, "pair_style egraff: CUDA asked for, this torch has none (a CPU build, or no GPU visible): use device cpu");
  const int ngpu = (int) torch::cuda::device_count();
  int index;
  if (name.size() > 5) {
    index = utils::inumeric(FLERR, name.substr(5), false, lmp);
  } else {
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &index);
    MPI_Comm_free(&node);
  }
  if (index < 0 || (name.size() > 5 && index >= ngpu))
    error->all(FLERR, "pair_style egraff: {} asked for, this node has {} GPU(s)", name, ngpu);
  return torch::Device(torch::kCUDA, (c10::DeviceIndex) (index % ngpu));
}

/* The stages on one atom without neighbours: the widths the model really exchanges must be
   those of the metadata (a mismatch would make the exchange read the wrong numbers). */

void PairEgraff::check_stages()
{
  if (!model.find_method("stage_embed") || !model.find_method("stage_layer"))
    error->all(FLERR, "pair_style egraff: {} says it has stages but its model has no stage_embed/stage_layer: deploy it again", artifact);
  torch::NoGradGuard no_grad;
  torch::jit::GraphOptimizerEnabledGuard graph_optimisation(optimize_graph);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor types = torch::zeros({1}, i64.device(device));
  try {
    auto emb = model.get_method("stage_embed")({types}).toTuple();
    torch::Tensor x = emb->elements()[0].toTensor();
    torch::Tensor h = emb->elements()[1].toTensor();
    for (int k = 0; k < stage_layers; k++) {
      if (x.size(1) != feature_widths[k])
        error->all(FLERR, "pair_style egraff: stage metadata of {} does not match its model: layer {} reads {} features, the metadata says {}; deploy it again",
                   artifact, k, (int) x.size(1), feature_widths[k]);
      auto out = model.get_method("stage_layer")({(int64_t) k, torch::zeros({1, 3}, f64.device(device)), types,
                                                  torch::zeros({2, 0}, i64.device(device)),
                                                  torch::zeros({0, 3}, f64.device(device)), x, h})
                     .toTuple();
      x = out->elements()[0].toTensor();
      h = out->elements()[1].toTensor();
    }
    if (x.size(1) != 0)
      error->all(FLERR, "pair_style egraff: stage metadata of {} does not match its model: it has more than {} layers; deploy it again",
                 artifact, stage_layers);
  } catch (const c10::Error &e) {
    error->all(FLERR, "pair_style egraff: the stages of {} do not run: {}", artifact,
               std::string(e.what_without_backtrace()).substr(0, 200));
  }
}

/* pair_coeff * * Ge Te : the element of each LAMMPS type */

void PairEgraff::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes)
    error->all(FLERR, "pair_coeff for egraff: expected pair_coeff * * followed by {} element symbols", ntypes);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for egraff must be pair_coeff * * ELEMENTS...");
  type_map.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    std::string sym = arg[1 + t];
    int found = -1;
    for (size_t k = 0; k < type_names.size(); k++)
      if (type_names[k] == sym) found = (int) k;
    if (found < 0) {
      std::string have;
      for (auto &s : type_names) have += (have.empty() ? "" : ",") + s;
      error->all(FLERR, "pair_coeff for egraff: species {} of type {} is not in the model {} (it has {})",
                 sym, t, artifact, have);
    }
    type_map[t] = found;
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairEgraff::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style egraff requires newton pair on (add 'newton on' to the input)");
  if (strcmp(force->pair_style, "egraff") != 0 && comm->me == 0)
    error->warning(FLERR, "pair_style egraff inside hybrid: energies of the other styles are not seen by the model");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style egraff requires atom IDs");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style egraff: units {} is not supported: the model speaks eV and Angstrom; use units metal", update->unit_style);
  // once per pair_style: LAMMPS initialises the style before every run command
  if (comm->me == 0 && !warned) physical_warnings();
  warned = true;
  const bool one_rank = comm->nprocs == 1;
  // auto: several ranks run staged where the artifact has stages; one rank runs staged only
  // where its layers go in chunks (more than chunk_atoms atoms: 1.8x faster than images at
  // 5,400 atoms, measured), else images (5 % faster than one chunk at 200 atoms)
  mode = mode_request;
  const bool chunked = chunk_atoms > 0 && atom->nlocal > chunk_atoms;
  if (mode == AUTO) {
    if (one_rank) mode = (stage_layers > 0 && chunked) ? STAGED : IMAGES;
    else mode = stage_layers > 0 ? STAGED : GHOSTS;
  }
  if (mode == IMAGES && !one_rank)
    error->all(FLERR, "pair_style egraff: mode images needs one rank (this run has {}); use mode auto", comm->nprocs);
  if (mode == STAGED && comm->style != Comm::BRICK)
    error->all(FLERR, "pair_style egraff: mode staged needs comm_style brick (the per-layer exchange is tested there only); use comm_style brick or mode ghosts");
  // images: ghosts are periodic images of local atoms, so edges go to their owners with a
  // shift and the model sees only the local atoms (no ghost shell, no work on ghosts).
  // ghosts: message-passing models need a shell of layers x r_max whose atoms have
  // neighbour lists too; strictly local models only local centres.
  // staged: a shell of r_max, neighbour lists of local atoms only.
  images_mode = mode == IMAGES;    // the model's own virial; else sum r x f (tally_virial)
  const bool ghost_lists = mode == GHOSTS && !strictly_local;
  neighbor->add_request(this, ghost_lists ? NeighConst::REQ_FULL | NeighConst::REQ_GHOST
                                          : NeighConst::REQ_FULL);
  double need = ghost_cutoff + neighbor->skin;
  if (ghost_lists && comm->cutghostuser < need) {
    comm->cutghostuser = need;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style egraff: ghost cutoff set to {:.4g} A ({} message-passing layers x r_max {:.4g} A + skin)\n",
                     need, num_layers, r_max);
  }
  if (comm->me == 0) {
    const char *name[] = {"auto", "images", "ghosts", "staged"};
    utils::logmesg(lmp, "pair_style egraff: mode {} on {} rank(s){}\n", name[mode], comm->nprocs,
                   mode == STAGED ? fmt::format(" ({} layers, ghost shell r_max {:.4g} A + skin, features exchanged between layers{})",
                                                stage_layers, r_max, chunked ? fmt::format(", chunks of ~{} centres", chunk_atoms) : "")
                                  : "");
  }
}

/* Warnings (LAMMPS' log) for a set-up that runs but is likely wrong: a type whose mass is
   not that of the element pair_coeff gives it (more than 1 % off: a swapped type order), and
   a timestep above 1 fs x sqrt(m/amu) of the lightest element (1 fs with H, ~4 fs for GeTe). */

void PairEgraff::physical_warnings()
{
  double lightest = 0.0;
  std::string light;
  for (int t = 1; t <= atom->ntypes && t < (int) type_map.size(); t++) {
    if (type_map[t] < 0) continue;
    const std::string &sym = type_names[type_map[t]];
    double ref = 0.0;
    for (const auto &el : EgraffElements::table)
      if (sym == el.symbol) ref = el.mass;
    if (ref <= 0.0) continue;
    if (lightest == 0.0 || ref < lightest) {
      lightest = ref;
      light = sym;
    }
    if (atom->mass && atom->mass_setflag && atom->mass_setflag[t]) {
      const double m = atom->mass[t];
      if (std::fabs(m - ref) > 0.01 * ref)
        error->warning(FLERR, "pair_style egraff: type {} has mass {:.4g} amu but pair_coeff makes it {} ({:.4g} amu): is the type order of the data file and pair_coeff the same?",
                       t, m, sym, ref);
    }
  }
  const double dt_fs = update->dt * 1000.0;    // metal: ps
  if (lightest > 0.0 && dt_fs > std::sqrt(lightest))
    error->warning(FLERR, "pair_style egraff: timestep {:.4g} fs is above {:.3g} fs = 1 fs x sqrt(m/amu) of the lightest element, {}",
                   dt_fs, std::sqrt(lightest), light);
}

double PairEgraff::init_one(int, int)
{
  return r_max;
}

void PairEgraff::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  // TorchScript's graph optimisations (profiling executor, fusion) cost MACE 1.2-1.3x at
  // thousands of atoms and gain nothing at hundreds: by default the model runs unoptimised;
  // `optimize yes` turns them on (PaiNN, DimeNet++: 10-14 % faster at 200 atoms, measured).
  torch::jit::GraphOptimizerEnabledGuard graph_optimisation(optimize_graph);
  if (vflag_atom || cvflag_atom) error->all(FLERR, "pair_style egraff does not compute per-atom virials");

  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  // Ask for the virial on every step in images mode, not only when LAMMPS needs it: the
  // TorchScript executor specialises on the flag, and switching it every few steps costs
  // more than the strain derivative itself. Other modes sum r x f over local and ghost atoms.
  const bool want_virial = images_mode;

  double elocal;
  if (mode == STAGED) {
    build_edges(list->inum, false);
    elocal = compute_staged(want_virial);
  } else {
    // edges within r_max from local centres (and ghost centres for message passing with a
    // deep shell); in images mode a ghost neighbour becomes its owner plus a shift
    build_edges(list->inum + ((strictly_local || images_mode) ? 0 : list->gnum), images_mode);
    const int64_t nedge = (int64_t) edges.size() / 2;
    if (nlocal == 0) {
      elocal = 0.0;    // no atoms on this rank (a molecule on many ranks): nothing to add
    } else if (strictly_local && chunk_atoms > 0 && nlocal > chunk_atoms) {
      elocal = compute_chunks(nedge, want_virial);
    } else {
      const int nmodel = images_mode ? nlocal : ntotal;    // atoms the model sees
      model_atoms.resize(nmodel);
      std::iota(model_atoms.begin(), model_atoms.end(), 0);
      elocal = evaluate(model_atoms, nlocal, edges, shifts, want_virial);
    }
  }
  if (!std::isfinite(elocal)) error->one(FLERR, "pair_style egraff: the model returned a non-finite energy");
  if (eflag_global) eng_vdwl += elocal;
}

/* The virial of forces f (eV/A, row-major [n][3]) that this style adds on atoms at x:
   sum r_i x f_i (LAMMPS order xx yy zz xy xz yz). */

void PairEgraff::tally_virial(const std::vector<int> &atoms_of, const double *fr, double sign)
{
  if (!vflag_global) return;
  double **x = atom->x;
  for (size_t a = 0; a < atoms_of.size(); a++) {
    const double *r = x[atoms_of[a]];
    const double *g = fr + 3 * a;
    virial[0] += sign * r[0] * g[0];
    virial[1] += sign * r[1] * g[1];
    virial[2] += sign * r[2] * g[2];
    virial[3] += sign * r[0] * g[1];
    virial[4] += sign * r[0] * g[2];
    virial[5] += sign * r[1] * g[2];
  }
}

/* Edges (i, j) within r_max of the first ncenter atoms of the neighbour list into edges and
   shifts; fold: a ghost neighbour becomes its local owner plus a shift (one rank). */

void PairEgraff::build_edges(int ncenter, bool fold)
{
  const int nlocal = atom->nlocal;
  double **x = atom->x;
  tagint *tag = atom->tag;
  if (fold) {
    tagint maxtag = 0;
    for (int i = 0; i < nlocal; i++) maxtag = MAX(maxtag, tag[i]);
    owner.assign(maxtag + 1, -1);
    for (int i = 0; i < nlocal; i++) owner[tag[i]] = i;
  }
  const double cut2 = r_max * r_max;
  edges.clear();
  shifts.clear();
  for (int ii = 0; ii < ncenter; ii++) {
    const int i = list->ilist[ii];
    const int *jlist = list->firstneigh[i];
    const int jnum = list->numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cut2) continue;
      double s[3] = {0.0, 0.0, 0.0};
      if (fold && j >= nlocal) {
        const int o = (tag[j] <= (tagint) owner.size() - 1) ? owner[tag[j]] : -1;
        if (o < 0) error->one(FLERR, "pair_style egraff: ghost atom {} has no local owner", tag[j]);
        for (int d = 0; d < 3; d++) s[d] = x[j][d] - x[o][d];
        j = o;
      }
      edges.push_back(i);
      edges.push_back(j);
      shifts.insert(shifts.end(), s, s + 3);
    }
  }
}

/* The staged path (mode staged; deploy/README.md, "Stages"). Layer 0's features follow from
   the types of all atoms; before each later layer the local atoms' features x_k are copied
   to their ghosts by a forward communication. Every layer keeps its autograd graph; the
   backward pass runs the layers in reverse with torch::autograd::grad (the vector-Jacobian
   product of the layer's outputs x_{k+1}, h_{k+1} and energy), adds -dE/dpos to the forces
   of local and ghost atoms, and sums the ghosts' gradients of x_k onto their owners with a
   reverse communication before layer k-1. Ghost forces go home through LAMMPS' own reverse
   communication; the virial is sum(r_i x f_i) over local and ghost atoms. Returns the local
   energy (eV). */

double PairEgraff::compute_staged(bool)
{
  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const int64_t nedge = (int64_t) edges.size() / 2;

  if (nlocal == 0) {
    // a rank without atoms (a molecule in vacuum on many ranks): no model call, but every
    // exchange is collective, so take part in each with nothing to add
    for (int k = 0; k + 1 < stage_layers; k++) {
      exchange.assign((size_t) ntotal * feature_widths[k + 1], 0.0);
      comm_buf = exchange.data();
      comm_width = feature_widths[k + 1];
      if (skip_exchange != k + 1) comm->forward_comm(this, comm_width);
    }
    for (int k = stage_layers - 1; k >= 1; k--) {
      exchange.assign((size_t) ntotal * feature_widths[k], 0.0);
      comm_buf = exchange.data();
      comm_width = feature_widths[k];
      if (skip_exchange != k) comm->reverse_comm(this, comm_width);
    }
    comm_buf = nullptr;
    return 0.0;
  }

  // the chunks: spatial chunks of about chunk_atoms centres on large ranks, else one chunk
  // holding every atom of the rank
  const bool whole = !(chunk_atoms > 0 && nlocal > chunk_atoms);    // chunk 0 = every atom
  if (!whole) {
    build_chunks(nedge);
  } else {
    chunks.assign(1, std::vector<int>(ntotal));
    std::iota(chunks[0].begin(), chunks[0].end(), 0);
    n_center.assign(1, nlocal);
    chunk_edges.assign(1, edges);
    chunk_shifts.clear();
  }
  const int nchunk = (int) chunks.size();
  std::vector<torch::Tensor> pos(nchunk), types(nchunk), edge_index(nchunk), shift(nchunk),
      members(nchunk), centres(nchunk);
  for (int c = 0; c < nchunk; c++) {
    const int na = (int) chunks[c].size();
    pos[c] = torch::empty({na, 3}, f64);
    types[c] = torch::empty({na}, i64);
    auto p = pos[c].accessor<double, 2>();
    auto t = types[c].accessor<int64_t, 1>();
    for (int a = 0; a < na; a++) {
      const int i = chunks[c][a];
      for (int d = 0; d < 3; d++) p[a][d] = x[i][d];
      t[a] = type_map[type[i]];
    }
    pos[c] = pos[c].to(device).requires_grad_(true);
    types[c] = types[c].to(device);
    const int64_t ne = (int64_t) chunk_edges[c].size() / 2;
    edge_index[c] = torch::from_blob(chunk_edges[c].data(), {ne, 2}, i64).t().contiguous().to(device);
    shift[c] = torch::zeros({ne, 3}, f64.device(device));
    members[c] = torch::from_blob(chunks[c].data(), {na}, torch::kInt32).to(device, torch::kInt64);
    centres[c] = members[c].slice(0, 0, n_center[c]);
  }
  auto layer = model.get_method("stage_layer");

  std::vector<double> energy(nlocal, 0.0);
  torch::Tensor xk, hk;    // x_k of all atoms, h_k of the local atoms
  {
    torch::NoGradGuard no_grad;
    torch::Tensor all_types = torch::empty({ntotal}, i64);
    auto t = all_types.accessor<int64_t, 1>();
    for (int i = 0; i < ntotal; i++) t[i] = type_map[type[i]];
    auto emb = model.get_method("stage_embed")({all_types.to(device)}).toTuple();
    xk = emb->elements()[0].toTensor();
    hk = emb->elements()[1].toTensor().slice(0, 0, nlocal);
    torch::Tensor e0 = emb->elements()[2].toTensor().to(torch::kCPU).contiguous();
    const double *e = e0.data_ptr<double>();
    for (int i = 0; i < nlocal; i++) energy[i] += e[i];
  }

  // forward, layer by layer and chunk by chunk, keeping every chunk's autograd graph
  const size_t nsaved = (size_t) stage_layers * nchunk;
  std::vector<torch::Tensor> x_in(nsaved), h_in(nsaved), x_out(nsaved), h_out(nsaved),
      e_out(nsaved);
  for (int k = 0; k < stage_layers; k++) {
    torch::Tensor x_next, h_next;
    for (int c = 0; c < nchunk; c++) {
      const size_t s = (size_t) k * nchunk + c;
      x_in[s] = (whole ? xk : xk.index_select(0, members[c])).detach().requires_grad_(k > 0);
      h_in[s] = (whole ? hk : hk.index_select(0, centres[c])).detach().requires_grad_(k > 0);
      auto out = layer({(int64_t) k, pos[c], types[c], edge_index[c], shift[c], x_in[s], h_in[s]})
                     .toTuple();
      x_out[s] = out->elements()[0].toTensor();
      h_out[s] = out->elements()[1].toTensor();
      e_out[s] = out->elements()[2].toTensor();
      torch::Tensor ek = e_out[s].detach().to(torch::kCPU).contiguous();
      const double *e = ek.data_ptr<double>();
      for (int a = 0; a < n_center[c]; a++) energy[chunks[c][a]] += e[a];
      if (k + 1 < stage_layers) {
        if (x_out[s].size(1) != feature_widths[k + 1])
          error->one(FLERR, "pair_style egraff: layer {} of {} returned {} features per atom, the metadata says {}",
                     k, artifact, (int) x_out[s].size(1), feature_widths[k + 1]);
        if (whole) {
          x_next = x_out[s].detach();
          h_next = h_out[s].detach();
        } else {
          if (!x_next.defined()) {
            x_next = torch::empty({nlocal, x_out[s].size(1)}, x_out[s].options());
            h_next = torch::empty({nlocal, h_out[s].size(1)}, h_out[s].options());
          }
          x_next.index_copy_(0, centres[c], x_out[s].detach());
          h_next.index_copy_(0, centres[c], h_out[s].detach());
        }
      }
    }
    if (k + 1 < stage_layers) {
      // forward communication: the local atoms' x_{k+1} to their ghosts
      const int w = feature_widths[k + 1];
      exchange.assign((size_t) ntotal * w, 0.0);
      torch::Tensor buf = torch::from_blob(exchange.data(), {ntotal, w}, f64);
      buf.slice(0, 0, nlocal).copy_(x_next);    // from the device, if any
      comm_buf = exchange.data();
      comm_width = w;
      if (skip_exchange != k + 1) comm->forward_comm(this, w);
      xk = buf.to(device, model_dtype, false, true);
      hk = h_next;
    }
  }

  // backward, layer by layer: vector-Jacobian products of each chunk's outputs
  torch::Tensor g_x, g_h;    // gradients of x_{k+1} (local; owners' sums) and of h_{k+1}
  for (int k = stage_layers - 1; k >= 0; k--) {
    const int w = feature_widths[k];
    torch::Tensor g_x_all, g_h_all;
    if (k > 0) {
      exchange.assign((size_t) ntotal * w, 0.0);
      g_x_all = torch::from_blob(exchange.data(), {ntotal, w}, f64);
      g_h_all = torch::zeros({nlocal, h_in[(size_t) k * nchunk].size(1)}, f64.device(device));
    }
    for (int c = 0; c < nchunk; c++) {
      const size_t s = (size_t) k * nchunk + c;
      std::vector<torch::Tensor> outputs, cotangents;
      torch::Tensor esum = e_out[s].sum();
      if (esum.requires_grad()) {
        outputs.push_back(esum);
        cotangents.push_back(torch::ones({}, f64.device(device)));
      }
      if (g_x.defined() && x_out[s].requires_grad() && x_out[s].numel()) {
        outputs.push_back(x_out[s]);
        cotangents.push_back(whole ? g_x : g_x.index_select(0, centres[c]));
      }
      if (g_h.defined() && h_out[s].requires_grad()) {
        outputs.push_back(h_out[s]);
        cotangents.push_back(whole ? g_h : g_h.index_select(0, centres[c]));
      }
      std::vector<torch::Tensor> inputs{pos[c]};
      if (k > 0) {
        inputs.push_back(h_in[s]);
        inputs.push_back(x_in[s]);
      }
      std::vector<torch::Tensor> grads(inputs.size());
      if (!outputs.empty())
        grads = torch::autograd::grad(outputs, inputs, cotangents, false, false, true);
      x_in[s] = h_in[s] = x_out[s] = h_out[s] = e_out[s] = torch::Tensor();    // free the graph
      if (grads[0].defined()) {
        torch::Tensor gp = grads[0].to(torch::kCPU).contiguous();
        const double *g = gp.data_ptr<double>();
        const std::vector<int> &m = chunks[c];
        for (size_t a = 0; a < m.size(); a++)
          for (int d = 0; d < 3; d++) f[m[a]][d] -= g[3 * a + d];
        tally_virial(m, g, -1.0);
      }
      if (k > 0) {
        if (grads[1].defined()) g_h_all.index_copy_(0, centres[c], grads[1].to(torch::kFloat64));
        if (grads[2].defined())
          g_x_all.index_add_(0, members[c].to(torch::kCPU), grads[2].to(torch::kCPU, torch::kFloat64));
      }
    }
    if (k == 0) break;
    // reverse communication: the ghosts' gradients of x_k summed onto their owners
    comm_buf = exchange.data();
    comm_width = w;
    if (skip_exchange != k) comm->reverse_comm(this, w);
    g_x = g_x_all.slice(0, 0, nlocal).to(device, model_dtype, false, true);
    g_h = g_h_all.to(model_dtype);
  }
  comm_buf = nullptr;

  double elocal = 0.0;
  for (int i = 0; i < nlocal; i++) {
    elocal += energy[i];
    if (eflag_atom) eatom[i] += energy[i];
  }
  return elocal;
}

/* Forward and reverse communication of comm_buf (comm_width numbers per atom): features
   are the same in every periodic image, so no shift is applied. */

int PairEgraff::pack_forward_comm(int n, int *list, double *buf, int, int *)
{
  int m = 0;
  for (int a = 0; a < n; a++) {
    const double *src = comm_buf + (size_t) list[a] * comm_width;
    for (int c = 0; c < comm_width; c++) buf[m++] = src[c];
  }
  return m;
}

void PairEgraff::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int a = first; a < first + n; a++) {
    double *dst = comm_buf + (size_t) a * comm_width;
    for (int c = 0; c < comm_width; c++) dst[c] = buf[m++];
  }
}

int PairEgraff::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int a = first; a < first + n; a++) {
    const double *src = comm_buf + (size_t) a * comm_width;
    for (int c = 0; c < comm_width; c++) buf[m++] = src[c];
  }
  return m;
}

void PairEgraff::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  for (int a = 0; a < n; a++) {
    double *dst = comm_buf + (size_t) list[a] * comm_width;
    for (int c = 0; c < comm_width; c++) dst[c] += buf[m++];
  }
}

/* extract("egraff_mode"): 1 images, 2 ghosts, 3 staged (what init_style chose). */

void *PairEgraff::extract(const char *name, int &dim)
{
  dim = 0;
  if (strcmp(name, "egraff_mode") == 0) {
    mode_value = (double) mode;
    return (void *) &mode_value;
  }
  return nullptr;
}

/* The model on atoms[0..na) (LAMMPS indices; the first n_center are the centres, whose
   energies count) with edges (i0, j0, i1, j1, ...) and shifts in that numbering: adds the
   centres' per-atom energies, the forces on all the atoms and, when asked, the model's
   virial. Returns the centres' energy (eV). */

double PairEgraff::evaluate(const std::vector<int> &atoms, int n_center,
                            std::vector<int64_t> &edge_buf, std::vector<double> &shift_buf,
                            bool want_virial)
{
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int na = (int) atoms.size();
  const int64_t ne = (int64_t) edge_buf.size() / 2;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = torch::empty({na, 3}, f64);
  torch::Tensor types = torch::empty({na}, i64);
  auto p = pos.accessor<double, 2>();
  auto t = types.accessor<int64_t, 1>();
  for (int a = 0; a < na; a++) {
    const int i = atoms[a];
    for (int d = 0; d < 3; d++) p[a][d] = x[i][d];
    t[a] = type_map[type[i]];
  }
  torch::Tensor edge_index = torch::from_blob(edge_buf.data(), {ne, 2}, i64).t().contiguous();
  torch::Tensor shift = torch::from_blob(shift_buf.data(), {ne, 3}, f64).clone();

  std::vector<torch::jit::IValue> inputs{pos.to(device), types.to(device), edge_index.to(device),
                                         shift.to(device), (int64_t) n_center, want_virial};
  auto out = model.forward(inputs).toTuple();
  torch::Tensor atom_energy = out->elements()[0].toTensor().to(torch::kCPU).contiguous();
  torch::Tensor forces = out->elements()[1].toTensor().to(torch::kCPU).contiguous();
  const double *e = atom_energy.data_ptr<double>();
  const double *fr = forces.data_ptr<double>();
  double ecentres = 0.0;
  for (int a = 0; a < n_center; a++) {
    ecentres += e[a];
    if (eflag_atom) eatom[atoms[a]] += e[a];
  }
  for (int a = 0; a < na; a++) {
    const int i = atoms[a];
    f[i][0] += fr[3 * a];
    f[i][1] += fr[3 * a + 1];
    f[i][2] += fr[3 * a + 2];
  }
  if (!want_virial) tally_virial(atoms, fr, 1.0);
  if (want_virial && vflag_global) {
    torch::Tensor w = out->elements()[2].toTensor().to(torch::kCPU).contiguous();
    const double *v = w.data_ptr<double>();    // 3x3, row-major
    virial[0] += v[0];
    virial[1] += v[4];
    virial[2] += v[8];
    virial[3] += v[1];
    virial[4] += v[2];
    virial[5] += v[5];
  }
  return ecentres;
}

/* Spatial chunks of about chunk_atoms local centres each (a k x k x k grid over the local
   atoms' bounding box): chunks[c] lists the chunk's atoms, its n_center[c] centres first and
   then every other atom its edges reach; chunk_edges[c]/chunk_shifts[c] are the edges of
   its centres in that numbering. Evaluating a large system chunk by chunk keeps the model's
   tensors cache-sized, so the cost per atom does not grow with the system (measured:
   5,400-atom Allegro 1.4-1.6x faster than one call). */

void PairEgraff::build_chunks(int64_t nedge)
{
  const int nlocal = atom->nlocal;
  double **x = atom->x;

  double lo[3], hi[3];
  for (int d = 0; d < 3; d++) {
    lo[d] = x[0][d];
    hi[d] = x[0][d];
  }
  for (int i = 1; i < nlocal; i++)
    for (int d = 0; d < 3; d++) {
      lo[d] = MIN(lo[d], x[i][d]);
      hi[d] = MAX(hi[d], x[i][d]);
    }
  const int k = MAX(1, (int) std::lround(std::cbrt((double) nlocal / chunk_atoms)));
  const int ngroups = k * k * k;
  std::vector<int> group(nlocal);
  for (int i = 0; i < nlocal; i++) {
    int c[3];
    for (int d = 0; d < 3; d++) {
      const double w = hi[d] - lo[d];
      c[d] = (w > 0.0) ? MIN(k - 1, (int) ((x[i][d] - lo[d]) / w * k)) : 0;
    }
    group[i] = (c[0] * k + c[1]) * k + c[2];
  }
  // counting sort of the centres and of the edges (by the group of their centre)
  std::vector<int64_t> atom_start(ngroups + 1, 0), edge_start(ngroups + 1, 0);
  for (int i = 0; i < nlocal; i++) atom_start[group[i] + 1]++;
  for (int64_t e = 0; e < nedge; e++) edge_start[group[edges[2 * e]] + 1]++;
  for (int g = 0; g < ngroups; g++) {
    atom_start[g + 1] += atom_start[g];
    edge_start[g + 1] += edge_start[g];
  }
  std::vector<int> atom_order(nlocal);
  std::vector<int64_t> edge_order(nedge);
  {
    std::vector<int64_t> a(atom_start.begin(), atom_start.end() - 1);
    std::vector<int64_t> b(edge_start.begin(), edge_start.end() - 1);
    for (int i = 0; i < nlocal; i++) atom_order[a[group[i]]++] = i;
    for (int64_t e = 0; e < nedge; e++) edge_order[b[group[edges[2 * e]]]++] = e;
  }

  const int ntotal = nlocal + atom->nghost;
  slot.assign(ntotal, -1);
  chunks.clear();
  n_center.clear();
  chunk_edges.clear();
  chunk_shifts.clear();
  for (int g = 0; g < ngroups; g++) {
    const int nc = (int) (atom_start[g + 1] - atom_start[g]);
    if (nc == 0) continue;
    std::vector<int> members;
    for (int64_t a = atom_start[g]; a < atom_start[g + 1]; a++) {
      slot[atom_order[a]] = (int) members.size();
      members.push_back(atom_order[a]);
    }
    std::vector<int64_t> cedges;
    std::vector<double> cshifts;
    for (int64_t q = edge_start[g]; q < edge_start[g + 1]; q++) {
      const int64_t e = edge_order[q];
      const int j = (int) edges[2 * e + 1];
      if (slot[j] < 0) {
        slot[j] = (int) members.size();
        members.push_back(j);
      }
      cedges.push_back(slot[edges[2 * e]]);
      cedges.push_back(slot[j]);
      cshifts.insert(cshifts.end(), &shifts[3 * e], &shifts[3 * e] + 3);
    }
    for (int m : members) slot[m] = -1;
    chunks.push_back(std::move(members));
    n_center.push_back(nc);
    chunk_edges.push_back(std::move(cedges));
    chunk_shifts.push_back(std::move(cshifts));
  }
}

/* A strictly local model's energy is a sum over centres, each depending on its own
   neighbours only: the chunks' energies, forces and virials add up to those of one call.
   Returns the local energy. */

double PairEgraff::compute_chunks(int64_t nedge, bool want_virial)
{
  build_chunks(nedge);
  double elocal = 0.0;
  for (size_t c = 0; c < chunks.size(); c++)
    elocal += evaluate(chunks[c], n_center[c], chunk_edges[c], chunk_shifts[c], want_virial);
  return elocal;
}
