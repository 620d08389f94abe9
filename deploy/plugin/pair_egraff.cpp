/* pair_style egraff, the LAMMPS glue: settings, coeff, init_style, compute's dispatch, one
   model call (evaluate, compute_chunks), the communication buffers and extract. See
   pair_egraff.h; the staged driver is pair_egraff_staged.cpp, graph building egraff_graph.*,
   the metadata keys and mode names egraff_schema.h. */

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
#include <torch/version.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>

using namespace LAMMPS_NS;
using namespace EgraffSchema;

/* The mode names of the schema, as "auto|images|ghosts|staged" (sep "|") or "auto, images,
   ghosts or staged" (sep ", ", last " or "). */

static std::string mode_list(const char *sep, const char *last)
{
  std::string out;
  for (int m = 0; m < NUM_MODES; m++)
    out += std::string(m == 0 ? "" : (m + 1 == NUM_MODES ? last : sep)) + MODE_NAMES[m];
  return out;
}

PairEgraff::PairEgraff(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  // the per-atom virial (vatom) is not symmetrised; the centroid form (cvatom) has all 9
  centroidstressflag = CENTROID_AVAIL;
}

PairEgraff::~PairEgraff()
{
  if (devi_fp) fclose(devi_fp);
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
   [device cpu|cuda|cuda:N] [head NAME] [skip_exchange K] */

static const char *const KEYWORDS[] = {"chunk", "mode", "optimize", "device", "head",
                                       "skip_exchange", "devi_every", "devi_file", "relative",
                                       "atomic"};

static bool is_keyword(const char *word)
{
  for (const char *k : KEYWORDS)
    if (strcmp(word, k) == 0) return true;
  return false;
}

void PairEgraff::settings(int narg, char **arg)
{
  const std::string usage = "expected pair_style egraff ARTIFACT [ARTIFACT2 ...] [chunk N] [mode " + mode_list("|", "|") + "] [optimize yes|no] [device cpu|cuda|cuda:N] [head NAME] [devi_every N] [devi_file F] [atomic] [relative EPS]";
  if (narg < 1) error->all(FLERR, "Illegal pair_style egraff command: {}", usage);
  artifact = arg[0];
  // the committee: the artifacts after the first, up to the first keyword
  int first_keyword = 1;
  std::vector<std::string> members, member_args;
  while (first_keyword < narg && !is_keyword(arg[first_keyword])) members.push_back(arg[first_keyword++]);
  chunk_atoms = DEFAULT_CHUNK_ATOMS;
  mode_request = MODE_AUTO;
  skip_exchange = -1;
  warned = false;
  optimize_graph = false;
  devi_every = 0;
  devi_file = "model_devi.out";
  devi_relative = -1.0;
  devi_atomic = false;
  std::string device_name = "cpu";
  std::string head_name;
  for (int a = first_keyword; a < narg; a += 2) {
    if (strcmp(arg[a], "atomic") == 0) {    // the one keyword without a value (deepmd-kit's)
      devi_atomic = true;
      a--;
      continue;
    }
    if (a + 1 >= narg) error->all(FLERR, "Illegal pair_style egraff command: {} needs a value; {}", arg[a], usage);
    // what the committee's members share with the driving model
    if (strcmp(arg[a], "chunk") == 0 || strcmp(arg[a], "optimize") == 0 || strcmp(arg[a], "device") == 0 ||
        strcmp(arg[a], "head") == 0) {
      member_args.push_back(arg[a]);
      member_args.push_back(arg[a + 1]);
    }
    if (strcmp(arg[a], "devi_every") == 0) {
      devi_every = utils::inumeric(FLERR, arg[a + 1], false, lmp);
      if (devi_every < 1) error->all(FLERR, "pair_style egraff: devi_every must be a positive number of steps");
    } else if (strcmp(arg[a], "devi_file") == 0) {
      devi_file = arg[a + 1];
    } else if (strcmp(arg[a], "relative") == 0) {
      devi_relative = utils::numeric(FLERR, arg[a + 1], false, lmp);
      if (devi_relative <= 0.0) error->all(FLERR, "pair_style egraff: relative EPS must be positive (a force, in the style's units)");
    } else if (strcmp(arg[a], "chunk") == 0) {
      chunk_atoms = utils::inumeric(FLERR, arg[a + 1], false, lmp);
      if (chunk_atoms < 0) error->all(FLERR, "pair_style egraff: chunk must be 0 (off) or a positive number of atoms");
    } else if (strcmp(arg[a], "mode") == 0) {
      const std::string m = arg[a + 1];
      int code = -1;
      for (int c = 0; c < NUM_MODES; c++)
        if (m == MODE_NAMES[c]) code = c;
      if (code < 0) error->all(FLERR, "pair_style egraff: unknown mode {} ({})", m, mode_list(", ", " or "));
      mode_request = (Mode) code;
    } else if (strcmp(arg[a], "optimize") == 0) {
      optimize_graph = utils::logical(FLERR, arg[a + 1], false, lmp) == 1;
    } else if (strcmp(arg[a], "device") == 0) {
      device_name = arg[a + 1];
    } else if (strcmp(arg[a], "head") == 0) {
      head_name = arg[a + 1];
    } else if (strcmp(arg[a], "skip_exchange") == 0) {
      skip_exchange = utils::inumeric(FLERR, arg[a + 1], false, lmp);
    } else {
      error->all(FLERR, "Illegal pair_style egraff command: unknown keyword {}; {}", arg[a], usage);
    }
  }
  device = choose_device(device_name);
  std::unordered_map<std::string, std::string> extra{{META_FILE, ""}};
  // the file's kind from its content: an AOTInductor package's metadata names the
  // artifact's, a TorchScript archive has none
  package.reset();
  try {
    auto pkg_meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(artifact, PROGRAM_MODEL);
    if (pkg_meta.count(META_FILE)) extra[META_FILE] = pkg_meta[META_FILE];
  } catch (const std::exception &) {
  }
  if (!extra[META_FILE].empty()) {
    check_compiled(json::parse(extra[META_FILE]));
    try {
      package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          artifact, PROGRAM_MODEL, false, 1, device.is_cuda() ? device.index() : (c10::DeviceIndex) -1);
    } catch (const std::exception &e) {
      error->all(FLERR, "pair_style egraff: cannot load the compiled package {}: {}", artifact,
                 std::string(e.what()).substr(0, 200));
    }
  } else {
    try {
      model = torch::jit::load(artifact, device, extra);
    } catch (const std::exception &e) {
      error->all(FLERR, "pair_style egraff: cannot load artifact {}: not a complete TorchScript archive", artifact);
    }
  }
  if (extra[META_FILE].empty())
    error->all(FLERR, "pair_style egraff: {} is not an egraff-lmp artifact (no metadata)", artifact);
  json meta;
  stage_layers = 0;
  feature_widths.clear();
  try {
    meta = json::parse(extra[META_FILE]);
    type_names = meta.at(KEY_TYPE_NAMES).get<std::vector<std::string>>();
    r_max = meta.at(KEY_R_MAX).get<double>();
    ghost_cutoff = meta.at(KEY_GHOST_CUTOFF).get<double>();
    num_layers = meta.at(KEY_NUM_LAYERS).get<int>();
    strictly_local = meta.at(KEY_STRICTLY_LOCAL).get<bool>();
    const std::string dtype = meta.value(KEY_DTYPE, DTYPE_DEFAULT);
    model_dtype = (dtype == DTYPE_FLOAT32) ? torch::kFloat32 : torch::kFloat64;
    if (meta.contains(KEY_STAGES) && !meta[KEY_STAGES].is_null()) {
      stage_layers = meta[KEY_STAGES].at(STAGES_LAYERS).get<int>();
      feature_widths = meta[KEY_STAGES].at(STAGES_FEATURE_WIDTHS).get<std::vector<int>>();
      if ((int) feature_widths.size() != stage_layers || stage_layers != num_layers)
        throw std::runtime_error(fmt::format("stages: {} and {} disagree with {}", STAGES_LAYERS,
                                             STAGES_FEATURE_WIDTHS, KEY_NUM_LAYERS));
    }
    calling_convention = meta.at(KEY_CALLING_CONVENTION).get<int>();
    if (calling_convention < OLDEST_CALLING_CONVENTION || calling_convention > CALLING_CONVENTION)
      error->all(FLERR, "pair_style egraff: {} uses calling convention {}, this plugin speaks {} to {}",
                 artifact, calling_convention, OLDEST_CALLING_CONVENTION, CALLING_CONVENTION);
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_style egraff: corrupt metadata in {}: {}", artifact, e.what());
  }
  if (!package) model.eval();
  select_head(meta, head_name);
  if (!package && calling_convention >= 2 && !model.find_method(METHOD_FORWARD_EDGES))
    error->all(FLERR, "pair_style egraff: {} says calling convention {} but has no {} method: deploy it again",
               artifact, calling_convention, METHOD_FORWARD_EDGES);
  if (mode_request == MODE_STAGED && package && stage_layers == 0 && num_layers > 1 && !strictly_local)
    error->all(FLERR, "pair_style egraff: mode staged asked for, but the compiled package {} has no stages (compiled by an older egraff-lmp or from an artifact without them): compile it again (egraff-lmp compile), or use mode auto, images or ghosts", artifact);
  if (mode_request == MODE_STAGED && stage_layers == 0) {
    std::string why = meta.value(KEY_STAGES_UNAVAILABLE, std::string());
    if (strictly_local)
      error->all(FLERR, "pair_style egraff: {} is strictly local ({}): it has no message-passing stages; use mode auto or ghosts", artifact, meta.value(KEY_FAMILY, std::string("?")));
    error->all(FLERR, "pair_style egraff: mode staged asked for, but {} has no stages ({}): deploy it again with 'egraff-lmp deploy' or use mode ghosts",
               artifact, why.empty() ? "deployed without them" : why);
  }
  package_embed.reset();
  package_fw.clear();
  package_bw.clear();
  if (stage_layers > 0 && package) load_compiled_stages();
  if (stage_layers > 0) check_stages();
  if (skip_exchange >= 0 && (skip_exchange < 1 || skip_exchange >= stage_layers))
    error->all(FLERR, "pair_style egraff: skip_exchange must name a layer 1..{} of a staged artifact", stage_layers - 1);
  // the largest feature width travels in LAMMPS' forward and reverse communication (set
  // here, where pair_style hybrid reads it)
  comm_forward = comm_reverse = 0;
  for (int w : feature_widths) comm_forward = comm_reverse = MAX(comm_forward, w);
  make_committee(members, member_args);    // their widths too: they share the buffers
  // the virial is always the plugin's own (the model's, or sum r x f of the forces it adds):
  // set here, where pair_style hybrid reads it, so that hybrid never sums r x f over the
  // forces of every style after egraff has folded images onto their owners
  no_virial_fdotr_compute = 1;
}

/* device cpu | cuda | cuda:N. cuda: one GPU per rank, the rank's index among the ranks of
   its node modulo the GPUs it sees. */

/* A compiled package runs with the torch version and the device type it was compiled for
   (its metadata's KEY_COMPILED): anything else is one error. */

template <class Json> void PairEgraff::check_compiled(const Json &meta)
{
  if (!meta.contains(KEY_COMPILED))
    error->all(FLERR, "pair_style egraff: {} is an AOTInductor package without egraff-lmp's compiled metadata", artifact);
  const auto &c = meta[KEY_COMPILED];
  const std::string built = c.value(COMPILED_TORCH, std::string("?"));
  const std::string here = TORCH_VERSION;
  if (built.substr(0, built.find('+')) != here.substr(0, here.find('+')))
    error->all(FLERR, "pair_style egraff: {} was compiled with torch {}, this plugin runs torch {}: compile it again (egraff-lmp compile)", artifact, built, here);
  const std::string want = device.is_cuda() ? "cuda" : "cpu";
  if (c.value(COMPILED_DEVICE, std::string("?")) != want)
    error->all(FLERR, "pair_style egraff: {} was compiled for {}, asked to run on {}", artifact,
               c.value(COMPILED_DEVICE, std::string("?")), want);
}

/* head NAME: the head of a multi-head artifact (KEY_HEADS) that this style evaluates, set by
   filling the artifact's ATTR_HEAD buffer (shared by all its parts) with NAME's index;
   without head, the artifact's KEY_DEFAULT_HEAD or its only head. A compiled package runs
   the one head it was compiled for (COMPILED_HEAD). */

template <class Json> void PairEgraff::select_head(const Json &meta, const std::string &asked)
{
  std::vector<std::string> heads;
  if (meta.contains(KEY_HEADS)) heads = meta[KEY_HEADS].template get<std::vector<std::string>>();
  head = "";
  if (heads.empty()) {
    if (!asked.empty())
      error->all(FLERR, "pair_style egraff: head {} asked for, but {} ({}) has no heads", asked,
                 artifact, meta.value(KEY_FAMILY, std::string("?")));
    return;
  }
  std::string names;
  for (const auto &h : heads) names += (names.empty() ? "" : ", ") + h;
  if (package) {
    const std::string fixed = meta.at(KEY_COMPILED).value(COMPILED_HEAD, heads[0]);
    if (!asked.empty() && asked != fixed)
      error->all(FLERR, "pair_style egraff: {} was compiled for head {} only: compile it again with --head {}",
                 artifact, fixed, asked);
    head = fixed;
    return;
  }
  std::string name = asked;
  if (name.empty()) name = meta.value(KEY_DEFAULT_HEAD, heads.size() == 1 ? heads[0] : std::string());
  if (name.empty())
    error->all(FLERR, "pair_style egraff: {} has {} heads ({}): name the one to use with head NAME",
               artifact, heads.size(), names);
  const auto it = std::find(heads.begin(), heads.end(), name);
  if (it == heads.end())
    error->all(FLERR, "pair_style egraff: {} has no head {} (its heads: {})", artifact, name, names);
  if (!model.hasattr(ATTR_HEAD))
    error->all(FLERR, "pair_style egraff: {} lists heads but has no {} buffer: deploy it again", artifact,
               ATTR_HEAD);
  torch::NoGradGuard no_grad;
  model.attr(ATTR_HEAD).toTensor().fill_((int64_t) (it - heads.begin()));
  head = name;
}

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
  for (auto &m : committee) m->coeff(narg, arg);    // every member must know the species
}

void PairEgraff::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style egraff requires newton pair on (add 'newton on' to the input)");
  if (strcmp(force->pair_style, "egraff") != 0 && comm->me == 0)
    error->warning(FLERR, "pair_style egraff inside hybrid: energies of the other styles are not seen by the model");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style egraff requires atom IDs");
  set_units();
  // once per pair_style: LAMMPS initialises the style before every run command
  if (comm->me == 0 && !warned && !member) physical_warnings();
  warned = true;
  const bool one_rank = comm->nprocs == 1;
  // auto: several ranks run staged where the artifact has stages; one rank runs staged only
  // where its layers go in chunks (more than chunk_atoms atoms: 1.8x faster than images at
  // 5,400 atoms, measured), else images (5 % faster than one chunk at 200 atoms)
  mode = mode_request;
  const bool chunked = chunk_atoms > 0 && atom->nlocal > chunk_atoms;
  if (mode == MODE_AUTO) {
    if (one_rank) mode = (stage_layers > 0 && chunked) ? MODE_STAGED : MODE_IMAGES;
    else mode = stage_layers > 0 ? MODE_STAGED : MODE_GHOSTS;
  }
  if (mode == MODE_IMAGES && !one_rank)
    error->all(FLERR, "pair_style egraff: mode images needs one rank (this run has {}); use mode auto", comm->nprocs);
  if (mode == MODE_STAGED && comm->style != Comm::BRICK)
    error->all(FLERR, "pair_style egraff: mode staged needs comm_style brick (the per-layer exchange is tested there only); use comm_style brick or mode ghosts");
  // images: ghosts are periodic images of local atoms, so edges go to their owners with a
  // shift and the model sees only the local atoms (no ghost shell, no work on ghosts).
  // ghosts: message-passing models need a shell of layers x r_max whose atoms have
  // neighbour lists too; strictly local models only local centres.
  // staged: a shell of r_max, neighbour lists of local atoms only.
  images_mode = mode == MODE_IMAGES;    // the model's own virial; else sum r x f (tally_virial)
  ghost_lists = mode == MODE_GHOSTS && !strictly_local;
  // the committee's members share this style's neighbour list: ghost lists if any needs them
  for (auto &m : committee) {
    m->init();
    ghost_lists = ghost_lists || m->ghost_lists;
  }
  if (!member)
    neighbor->add_request(this, ghost_lists ? NeighConst::REQ_FULL | NeighConst::REQ_GHOST
                                            : NeighConst::REQ_FULL);
  double need = ghost_cutoff * length_unit + neighbor->skin;
  if (ghost_lists && comm->cutghostuser < need) {
    comm->cutghostuser = need;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair_style egraff: ghost cutoff set to {:.4g} ({} message-passing layers x r_max {:.4g} A + skin, units {})\n",
                     need, num_layers, r_max, update->unit_style);
  }
  if (comm->me == 0) {
    utils::logmesg(lmp, "pair_style egraff{}: mode {} on {} rank(s){}{}\n",
                   member ? fmt::format(" (committee member {})", artifact) : "", MODE_NAMES[mode], comm->nprocs,
                   mode == MODE_STAGED ? fmt::format(" ({} layers, ghost shell r_max {:.4g} A + skin, features exchanged between layers{})",
                                                stage_layers, r_max, chunked ? fmt::format(", chunks of ~{} centres", chunk_atoms) : "")
                                  : "",
                   head.empty() ? "" : fmt::format(", head {}", head));
  }
}

/* The unit style's factors (LAMMPS' own constants): the model speaks Å and eV; a length in
   the style is force->angstrom per Å, an energy force->boltz / (the metal boltz) per eV.
   lj has no physical units: refused. */

void PairEgraff::set_units()
{
  if (strcmp(update->unit_style, "lj") == 0)
    error->all(FLERR, "pair_style egraff: units lj has no physical units, the model speaks eV and Angstrom: use units metal, real or any other physical style");
  constexpr double BOLTZ_METAL = 8.617343e-5;    // eV/K, LAMMPS' metal constant
  length_unit = force->angstrom;
  energy_unit = force->boltz / BOLTZ_METAL;
  force_unit = energy_unit / length_unit;
  if (comm->me == 0 && strcmp(update->unit_style, "metal") != 0 && !warned)
    utils::logmesg(lmp, "pair_style egraff: units {}: 1 A = {:.9g} distance units, 1 eV = {:.9g} energy units\n",
                   update->unit_style, length_unit, energy_unit);
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
    // masses in amu (g/mol) in metal, real and electron only
    const bool amu = strcmp(update->unit_style, "metal") == 0 || strcmp(update->unit_style, "real") == 0 ||
                     strcmp(update->unit_style, "electron") == 0;
    if (amu && atom->mass && atom->mass_setflag && atom->mass_setflag[t]) {
      const double m = atom->mass[t];
      if (std::fabs(m - ref) > 0.01 * ref)
        error->warning(FLERR, "pair_style egraff: type {} has mass {:.4g} amu but pair_coeff makes it {} ({:.4g} amu): is the type order of the data file and pair_coeff the same?",
                       t, m, sym, ref);
    }
  }
  const double dt_fs = update->dt / force->femtosecond;    // the style's time unit to fs
  if (lightest > 0.0 && dt_fs > std::sqrt(lightest))
    error->warning(FLERR, "pair_style egraff: timestep {:.4g} fs is above {:.3g} fs = 1 fs x sqrt(m/amu) of the lightest element, {}",
                   dt_fs, std::sqrt(lightest), light);
}

double PairEgraff::init_one(int i, int j)
{
  double cut = cutoff();    // the committee's largest: its members share the neighbour list
  for (auto &m : committee) cut = MAX(cut, m->init_one(i, j));
  return cut;
}

void PairEgraff::compute(int eflag, int vflag)
{
  EgraffDefaultDtype default_dtype(model_dtype);
  // a committee's deviation step: energy and virial of every model, and the forces that
  // were on the atoms before this style's
  const bool devi_step = devi_every > 0 && update->ntimestep % devi_every == 0 && update->ntimestep != devi_last;
  if (devi_step) {
    eflag |= ENERGY_GLOBAL;
    vflag |= VIRIAL_PAIR;
    const int n = atom->nlocal + atom->nghost;
    f_before.assign(n ? &atom->f[0][0] : nullptr, n ? &atom->f[0][0] + 3 * (size_t) n : nullptr);
  }
  ev_init(eflag, vflag);
  // TorchScript's graph optimisations (profiling executor, fusion) cost MACE 1.2-1.3x at
  // thousands of atoms and gain nothing at hundreds: by default the model runs unoptimised;
  // `optimize yes` turns them on (PaiNN, DimeNet++: 10-14 % faster at 200 atoms, measured).
  torch::jit::GraphOptimizerEnabledGuard graph_optimisation(optimize_graph);
  atom_virial = vflag_atom || cvflag_atom;
  if (atom_virial) check_atom_virial();

  const int nlocal = atom->nlocal;
  const int ntotal = nlocal + atom->nghost;
  // Ask for the virial on every step in images mode, not only when LAMMPS needs it: the
  // TorchScript executor specialises on the flag, and switching it every few steps costs
  // more than the strain derivative itself. Other modes sum r x f over local and ghost atoms.
  const bool want_virial = images_mode;

  double elocal;
  if (mode == MODE_STAGED) {
    build_edges(list->inum, false);
    elocal = compute_staged();
  } else {
    // edges within r_max from local centres (and ghost centres for message passing with a
    // deep shell); in images mode a ghost neighbour becomes its owner plus a shift
    build_edges(list->inum + ((strictly_local || images_mode) ? 0 : list->gnum), images_mode);
    if (nlocal == 0) {
      elocal = 0.0;    // no atoms on this rank (a molecule on many ranks): nothing to add
    } else if (strictly_local && chunk_atoms > 0 && nlocal > chunk_atoms) {
      elocal = compute_chunks(want_virial);
    } else {
      const int nmodel = images_mode ? nlocal : ntotal;    // atoms the model sees
      model_atoms.resize(nmodel);
      std::iota(model_atoms.begin(), model_atoms.end(), 0);
      elocal = evaluate(model_atoms, nlocal, graph, want_virial);
    }
  }
  if (!std::isfinite(elocal)) error->one(FLERR, "pair_style egraff: the model returned a non-finite energy");
  if (eflag_global) eng_vdwl += elocal * energy_unit;
  if (devi_step) committee_deviation(elocal * energy_unit);
}

/* The virial of forces sign * fr (fr in eV/A, row-major [n][3]; sign carries the unit
   style's force factor) that this style adds on atoms at x: sum r_i x f_i (LAMMPS order
   xx yy zz xy xz yz, the style's energy). */

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

/* Per-atom virials need the edge gradients of calling convention 2, which a compiled
   package's programs do not return: one error for either. */

void PairEgraff::check_atom_virial()
{
  if (package)
    error->all(FLERR, "pair_style egraff: per-atom virials (compute stress/atom, centroid/stress/atom, heat/flux) need the TorchScript artifact; the compiled package {} does not return edge gradients",
               artifact);
  if (calling_convention < 2)
    error->all(FLERR, "pair_style egraff: per-atom virials (compute stress/atom, centroid/stress/atom, heat/flux) need calling convention 2; {} has {}: deploy it again with this egraff-lmp (egraff-lmp deploy)",
               artifact, calling_convention);
}

/* The per-atom virials of edges (i, j) in the numbering of atoms (LAMMPS indices; i the
   centre), with their shifts (style distance; zero but in images mode) and g = dE/dr_ij
   [E][3] (eV/A): each edge's w = -r_ij x g (the style's energy). A strictly local model's
   g is the derivative of the centre's own energy alone, so w goes whole to the neighbour j
   (Fan et al., PRB 92, 094301 (2015): W_j = sum_i r_ji x dU_i/dr_j, the heat flux of a
   many-body potential); a message-passing model's g mixes many atoms' energies, so w goes
   half to i, half to j (one partition of the virial, not the heat flux's). Both give the
   pair split for a two-body model. vatom: xx yy zz xy xz yz, as LAMMPS' many-body styles
   tally it (r_x g_y, not symmetrised: the edges' sum is symmetric for a rotation-invariant
   model); cvatom: the 9 components, then yx zx zy. */

void PairEgraff::tally_atom_virial(const std::vector<int> &atoms, const EgraffGraph::Edges &edges,
                                   const double *g)
{
  double **x = atom->x;
  const int64_t ne = edges.size();
  // eV -> the style's energy, whole to the neighbour or split in two
  const double share = (strictly_local ? 1.0 : 0.5) * energy_unit;
  for (int64_t e = 0; e < ne; e++) {
    const int i = atoms[edges.index[2 * e]], j = atoms[edges.index[2 * e + 1]];
    const double *sh = edges.shift.data() + 3 * e;
    const double *ge = g + 3 * e;
    double r[3];
    for (int d = 0; d < 3; d++) r[d] = (x[j][d] - x[i][d] + sh[d]) / length_unit;    // Å
    const double w[9] = {-r[0] * ge[0], -r[1] * ge[1], -r[2] * ge[2], -r[0] * ge[1], -r[0] * ge[2],
                         -r[1] * ge[2], -r[1] * ge[0], -r[2] * ge[0], -r[2] * ge[1]};
    for (const int a : {j, i}) {
      if (vflag_atom)
        for (int c = 0; c < 6; c++) vatom[a][c] += share * w[c];
      if (cvflag_atom)
        for (int c = 0; c < 9; c++) cvatom[a][c] += share * w[c];
      if (strictly_local) break;
    }
  }
}

/* Edges (i, j) within r_max of the first ncenter atoms of the neighbour list into graph;
   fold: a ghost neighbour becomes its local owner plus a shift (one rank). */

void PairEgraff::build_edges(int ncenter, bool fold)
{
  const EgraffGraph::NeighborList neigh{list->ilist, list->numneigh, list->firstneigh, NEIGHMASK};
  if (fold) EgraffGraph::owner_map(atom->tag, atom->nlocal, owner);
  const int64_t orphan = EgraffGraph::build_edges(atom->x, neigh, ncenter, cutoff(), fold, atom->nlocal,
                                                  atom->tag, owner, graph);
  if (orphan) error->one(FLERR, "pair_style egraff: ghost atom {} has no local owner", orphan);
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

/* extract(EXTRACT_MODE): the code of the mode init_style chose (MODE_IMAGES, MODE_GHOSTS or
   MODE_STAGED of egraff_schema.h). */

void *PairEgraff::extract(const char *name, int &dim)
{
  dim = 0;
  if (strcmp(name, EXTRACT_MODE) == 0) {
    mode_value = (double) mode;
    return (void *) &mode_value;
  }
  if (strcmp(name, EXTRACT_DEVI) == 0 && !committee.empty()) {
    dim = 0;    // the last max_devi_f (all 7 values: compute pair egraff)
    return (void *) devi;
  }
  return nullptr;
}

/* The model on atoms[0..na) (LAMMPS indices; the first n_center are the centres, whose
   energies count) with edges and shifts in that numbering: adds the centres' per-atom
   energies, the forces on all the atoms and, when asked, the model's virial. Returns the
   centres' energy (eV). */

/* A compiled package's inputs: PAD dummy atoms (type 0, at the first atom) inserted after
   atom n (n = every atom for one call, the local atoms for a stage call), joined only to
   each other by two edges r_max/2 long; the indices of the atoms after them move up by PAD
   (egraff_lmp/deploy/compiled.py, pad()). */

std::vector<torch::Tensor> PairEgraff::pad_inputs(const torch::Tensor &pos, const torch::Tensor &types,
                                                  const torch::Tensor &edge_index, const torch::Tensor &shift,
                                                  int64_t n, double r_max)
{
  constexpr int64_t PAD = 2;
  torch::Tensor at = pos.size(0) ? pos.slice(0, 0, 1) : torch::zeros({1, 3}, pos.options());
  torch::Tensor ppos = torch::cat({pos.slice(0, 0, n), at.expand({PAD, 3}), pos.slice(0, n)});
  torch::Tensor ptypes = torch::cat({types.slice(0, 0, n), torch::zeros({PAD}, types.options()), types.slice(0, n)});
  torch::Tensor edges = edge_index + edge_index.ge(n).to(torch::kInt64) * PAD;
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  edges = torch::cat({edges, torch::tensor({n, n + 1, n + 1, n}, i64).view({2, 2}).to(edge_index.device())}, 1);
  torch::Tensor pshift = torch::cat({shift, torch::tensor({0.5 * r_max, 0.0, 0.0, -0.5 * r_max, 0.0, 0.0}, f64)
                                                .view({2, 3}).to(shift.device())});
  return {ppos, ptypes, edges, pshift};
}

double PairEgraff::evaluate(const std::vector<int> &atoms, int n_center,
                            EgraffGraph::Edges &edges, bool want_virial)
{
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int na = (int) atoms.size();
  const int64_t ne = edges.size();
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor pos = torch::empty({na, 3}, f64);
  torch::Tensor types = torch::empty({na}, i64);
  auto p = pos.accessor<double, 2>();
  auto t = types.accessor<int64_t, 1>();
  for (int a = 0; a < na; a++) {
    const int i = atoms[a];
    for (int d = 0; d < 3; d++) p[a][d] = x[i][d] / length_unit;
    t[a] = type_map[type[i]];
  }
  torch::Tensor edge_index = torch::from_blob(edges.index.data(), {ne, 2}, i64).t().contiguous();
  torch::Tensor shift = torch::from_blob(edges.shift.data(), {ne, 3}, f64).clone();
  if (length_unit != 1.0) shift.div_(length_unit);    // Å

  torch::Tensor atom_energy, forces, w;
  if (package) {
    // the package's sizes start at 2: two dummy atoms (type 0, at the first atom) joined only
    // to each other by two edges r_max/2 long, after every atom (their index >= n_center:
    // no energy, no neighbour among the real atoms), cut off again below
    std::vector<torch::Tensor> padded = pad_inputs(pos, types, edge_index, shift, na, r_max);
    auto out = package->run({padded[0].to(device), padded[1].to(device), padded[2].to(device), padded[3].to(device),
                             torch::scalar_tensor((int64_t) n_center, i64).to(device)});
    atom_energy = out[0].to(torch::kCPU).contiguous();
    forces = out[1].to(torch::kCPU).contiguous();
    w = out[2];
  } else if (atom_virial) {
    // calling convention 2: the edge gradients, tallied per atom; the virial is their sum
    auto out = model.get_method(METHOD_FORWARD_EDGES)({pos.to(device), types.to(device), edge_index.to(device),
                                                       shift.to(device), (int64_t) n_center})
                   .toTuple();
    atom_energy = out->elements()[0].toTensor().to(torch::kCPU).contiguous();
    forces = out->elements()[1].toTensor().to(torch::kCPU).contiguous();
    torch::Tensor g = out->elements()[2].toTensor().to(torch::kCPU).contiguous();
    tally_atom_virial(atoms, edges, g.data_ptr<double>());
    if (want_virial) {    // images: the model's virial, -sum r x g over the edges
      torch::Tensor vec = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + shift;
      w = -torch::einsum("ea,eb->ab", {vec, g});
    }
  } else {
    std::vector<torch::jit::IValue> inputs{pos.to(device), types.to(device), edge_index.to(device),
                                           shift.to(device), (int64_t) n_center, want_virial};
    auto out = model.forward(inputs).toTuple();
    atom_energy = out->elements()[0].toTensor().to(torch::kCPU).contiguous();
    forces = out->elements()[1].toTensor().to(torch::kCPU).contiguous();
    w = out->elements()[2].toTensor();
  }
  const double *e = atom_energy.data_ptr<double>();
  const double *fr = forces.data_ptr<double>();
  double ecentres = 0.0;    // eV
  for (int a = 0; a < n_center; a++) {
    ecentres += e[a];
    if (eflag_atom) eatom[atoms[a]] += e[a] * energy_unit;
  }
  for (int a = 0; a < na; a++) {
    const int i = atoms[a];
    f[i][0] += fr[3 * a] * force_unit;
    f[i][1] += fr[3 * a + 1] * force_unit;
    f[i][2] += fr[3 * a + 2] * force_unit;
  }
  if (!want_virial) tally_virial(atoms, fr, force_unit);
  if (want_virial && vflag_global) {
    w = w.to(torch::kCPU).contiguous();
    const double *v = w.data_ptr<double>();    // 3x3, row-major, eV
    virial[0] += v[0] * energy_unit;
    virial[1] += v[4] * energy_unit;
    virial[2] += v[8] * energy_unit;
    virial[3] += v[1] * energy_unit;
    virial[4] += v[2] * energy_unit;
    virial[5] += v[5] * energy_unit;
  }
  return ecentres;
}

/* A strictly local model's energy is a sum over centres, each depending on its own
   neighbours only: evaluated in spatial chunks of about chunk_atoms centres
   (EgraffGraph::build_chunks), the chunks' energies, forces and virials add up to those of
   one call. Evaluating a large system chunk by chunk keeps the model's tensors cache-sized,
   so the cost per atom does not grow with the system (measured: 5,400-atom Allegro 1.4-1.6x
   faster than one call). Returns the local energy. */

double PairEgraff::compute_chunks(bool want_virial)
{
  EgraffGraph::build_chunks(atom->x, atom->nlocal, atom->nlocal + atom->nghost, chunk_atoms, graph,
                            chunks);
  double elocal = 0.0;
  for (int c = 0; c < chunks.size(); c++)
    elocal += evaluate(chunks.atoms[c], chunks.n_center[c], chunks.edges[c], want_virial);
  return elocal;
}
