/* pair_style egraff: see pair_egraff.h. */

#include "pair_egraff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "utils.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

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

/* pair_style egraff ARTIFACT [chunk N] */

void PairEgraff::settings(int narg, char **arg)
{
  if (narg != 1 && !(narg == 3 && strcmp(arg[1], "chunk") == 0))
    error->all(FLERR, "Illegal pair_style egraff command: expected pair_style egraff ARTIFACT [chunk N]");
  artifact = arg[0];
  chunk_atoms = (narg == 3) ? utils::inumeric(FLERR, arg[2], false, lmp) : DEFAULT_CHUNK_ATOMS;
  if (chunk_atoms < 0) error->all(FLERR, "pair_style egraff: chunk must be 0 (off) or a positive number of atoms");
  std::unordered_map<std::string, std::string> extra{{"egraff_lmp.json", ""}};
  try {
    model = torch::jit::load(artifact, torch::kCPU, extra);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: cannot load artifact {}: not a complete TorchScript archive", artifact);
  }
  if (extra["egraff_lmp.json"].empty())
    error->all(FLERR, "pair_style egraff: {} is not an egraff-lmp artifact (no metadata)", artifact);
  json meta;
  try {
    meta = json::parse(extra["egraff_lmp.json"]);
    type_names = meta.at("type_names").get<std::vector<std::string>>();
    r_max = meta.at("r_max").get<double>();
    ghost_cutoff = meta.at("ghost_cutoff").get<double>();
    num_layers = meta.at("num_layers").get<int>();
    strictly_local = meta.at("strictly_local").get<bool>();
    if (meta.at("calling_convention").get<int>() != 1)
      error->all(FLERR, "pair_style egraff: {} uses calling convention {}, this plugin speaks 1",
                 artifact, meta.at("calling_convention").get<int>());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: corrupt metadata in {}: {}", artifact, e.what());
  }
  model.eval();
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
  if (force->newton_pair == 0) error->all(FLERR, "pair_style egraff requires newton pair on");
  if (strcmp(force->pair_style, "egraff") != 0 && comm->me == 0)
    error->warning(FLERR, "pair_style egraff inside hybrid: energies of the other styles are not seen by the model");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style egraff requires atom IDs");
  // One rank: ghosts are periodic images of local atoms, so edges go to their owners with a
  // shift and the model sees only the local atoms (no ghost shell, no work on ghosts).
  // Several ranks: message-passing models need a ghost shell of layers x r_max whose atoms
  // have neighbour lists too; strictly local models only local centres.
  images_mode = (comm->nprocs == 1);
  no_virial_fdotr_compute = images_mode ? 1 : 0;    // images mode: the model's own virial
  const bool ghost_lists = !strictly_local && !images_mode;
  neighbor->add_request(this, ghost_lists ? NeighConst::REQ_FULL | NeighConst::REQ_GHOST
                                          : NeighConst::REQ_FULL);
  double need = ghost_cutoff + neighbor->skin;
  if (ghost_lists && comm->cutghostuser < need) {
    comm->cutghostuser = need;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style egraff: ghost cutoff set to {:.4g} A ({} message-passing layers x r_max {:.4g} A + skin)\n",
                     need, num_layers, r_max);
  }
}

double PairEgraff::init_one(int, int)
{
  return r_max;
}

void PairEgraff::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  // TorchScript's graph optimisations (profiling executor, fusion) cost MACE 1.2-1.3x at
  // thousands of atoms and gain nothing at hundreds: run the model unoptimised.
  torch::jit::GraphOptimizerEnabledGuard no_graph_optimisation(false);
  if (vflag_atom || cvflag_atom) error->all(FLERR, "pair_style egraff does not compute per-atom virials");

  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  double **x = atom->x;
  tagint *tag = atom->tag;

  if (images_mode) {
    tagint maxtag = 0;
    for (int i = 0; i < nlocal; i++) maxtag = MAX(maxtag, tag[i]);
    owner.assign(maxtag + 1, -1);
    for (int i = 0; i < nlocal; i++) owner[tag[i]] = i;
  }

  // edges within r_max from local centres (and ghost centres for message passing on
  // several ranks); in images mode a ghost neighbour becomes its owner plus a shift
  const int ncenter = list->inum + ((strictly_local || images_mode) ? 0 : list->gnum);
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
      if (images_mode && j >= nlocal) {
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
  const int64_t nedge = (int64_t) edges.size() / 2;
  const int nmodel = images_mode ? nlocal : ntotal;    // atoms the model sees
  // Ask for the virial on every step in images mode, not only when LAMMPS needs it: the
  // TorchScript executor specialises on the flag, and switching it every few steps costs
  // more than the strain derivative itself.
  const bool want_virial = images_mode;

  double elocal;
  if (strictly_local && chunk_atoms > 0 && nlocal > chunk_atoms) {
    elocal = compute_chunks(nedge, want_virial);
  } else {
    model_atoms.resize(nmodel);
    std::iota(model_atoms.begin(), model_atoms.end(), 0);
    elocal = evaluate(model_atoms, nlocal, edges, shifts, want_virial);
  }
  if (!std::isfinite(elocal)) error->one(FLERR, "pair_style egraff: the model returned a non-finite energy");
  if (eflag_global) eng_vdwl += elocal;
  if (!want_virial && vflag_fdotr) virial_fdotr_compute();
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

  std::vector<torch::jit::IValue> inputs{pos, types, edge_index, shift, (int64_t) n_center,
                                         want_virial};
  auto out = model.forward(inputs).toTuple();
  torch::Tensor atom_energy = out->elements()[0].toTensor().contiguous();
  torch::Tensor forces = out->elements()[1].toTensor().contiguous();
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
  if (want_virial && vflag_global) {
    torch::Tensor w = out->elements()[2].toTensor().contiguous();
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

/* A strictly local model's energy is a sum over centres, each depending on its own
   neighbours only. Large systems are evaluated in spatial chunks of about chunk_atoms
   centres (their neighbours come along as ghosts of the chunk, n_local = the centres): the
   model's tensors then stay cache-sized and the cost per atom does not grow with the
   system (measured: 5,400-atom Allegro 1.4-1.6x faster than one call). Forces, energies
   and virials of the chunks add up to those of one call. Returns the local energy. */

double PairEgraff::compute_chunks(int64_t nedge, bool want_virial)
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
  std::vector<int> members;
  std::vector<int64_t> cedges;
  std::vector<double> cshifts;
  double elocal = 0.0;
  for (int g = 0; g < ngroups; g++) {
    const int nc = (int) (atom_start[g + 1] - atom_start[g]);
    if (nc == 0) continue;
    members.clear();
    for (int64_t a = atom_start[g]; a < atom_start[g + 1]; a++) {
      slot[atom_order[a]] = (int) members.size();
      members.push_back(atom_order[a]);
    }
    cedges.clear();
    cshifts.clear();
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
    elocal += evaluate(members, nc, cedges, cshifts, want_virial);
    for (int m : members) slot[m] = -1;
  }
  return elocal;
}
