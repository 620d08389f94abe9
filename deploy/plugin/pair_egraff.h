/* pair_style egraff: runs an egraff-lmp deployed artifact (TorchScript) inside LAMMPS, or its
   compiled AOTInductor package (*.egraff.pt2, every mode; read by its content).

   Syntax:   pair_style egraff ARTIFACT [ARTIFACT2 ...] [chunk N]
                                        [mode auto|images|ghosts|staged]
                                        [device cpu|cuda|cuda:N] [head NAME]
                                        [devi_every N] [devi_file F] [atomic]
                                        [relative EPS]
             pair_coeff * * Ge Te        (element of each LAMMPS type, by symbol)

   chunk N: more than N local atoms are evaluated in spatial chunks of about N centres each
   (default 512; 0: one call): a strictly local model (Allegro) chunk by chunk
   (compute_chunks()), a staged one layer by layer and chunk by chunk (compute_staged()).
   mode: how the model sees the atoms of this rank (default auto):
     images  one rank only: ghosts folded onto their owners, the model's own virial;
     ghosts  a ghost shell of layers x r_max (r_max for strictly local models) whose atoms
             the model evaluates too (one call);
     staged  message-passing artifacts with stages (deploy/README.md): a ghost shell of
             r_max only, one model call per layer, the ghosts' features filled by a forward
             communication between layers and their gradients summed onto the owners by a
             reverse communication in the backward pass (compute_staged());
     auto    on several ranks staged where the artifact has stages, else ghosts; on one
             rank staged where the artifact has stages and more than chunk N atoms (its
             layers then go in chunks of about N centres), else images.
   device: where the model runs (default cpu); cuda: one GPU per rank (the rank's index on
   its node modulo the node's GPUs), cuda:N that GPU. Needs a plugin built against a CUDA
   torch.
   head NAME: the head of a multi-head artifact (MACE fine-tuned with mace_run_train --heads)
   to evaluate; without it, the artifact's default head or its only one, else an error that
   names its heads. A compiled package runs the head it was compiled for. A committee's
   members take the same head.
   ARTIFACT2 ... (a committee): evaluated every devi_every N steps only (each in its own
   mode auto), beside ARTIFACT, which drives the dynamics; the deviation of their forces,
   energies and virials goes to devi_file F (default model_devi.out) and to compute pair
   egraff (pair_egraff_committee.cpp).
   skip_exchange K (tests only): leave the ghosts' layer-K features at zero instead of
   exchanging them, i.e. a wrong exchange that the tests must detect.

   Any LAMMPS unit style but lj: positions go to the model in Å (x / force->angstrom), its
   energies come back from eV (x force->boltz / the metal boltz), forces from eV/Å. Requires
   newton pair on. The artifact's calling convention is
   documented in deploy/README.md: positions of local+ghost atoms, model type index, a full
   list of edges within r_max, zero edge shifts (ghosts are explicit), number of local atoms;
   it returns per-atom energies and forces on all atoms (ghost forces are summed back by
   LAMMPS' reverse communication). The virial is the plugin's own: sum(r_i x f_i) over the
   forces it adds (local and ghost atoms), or the model's in images mode. Per-atom virials
   (compute stress/atom, centroid/stress/atom, hence heat/flux) on the steps that ask for
   them, from artifacts of calling convention 2: edge e = (i, j) adds -r_ij x dE/dr_ij to
   the neighbour j (strictly local models) or half of it to each of i and j (message
   passing); ghosts' shares go home through the computes' reverse communication;
   TorchScript artifacts only, every mode. Warnings in the log for type masses that are not those of pair_coeff's elements and for a
   timestep above 1 fs x sqrt(m/amu) of the lightest element.
   On one rank the ghosts are only periodic images of local atoms: the plugin then folds
   each ghost neighbour onto its owner with a shift, so the model sees the local atoms only
   (as in ASE) and returns the virial itself. */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(egraff,PairEgraff);
// clang-format on
#else

#ifndef LMP_PAIR_EGRAFF_H
#define LMP_PAIR_EGRAFF_H

#include "pair.h"

#include "egraff_graph.h"
#include "egraff_schema.h"

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>

#include <memory>

#include <string>
#include <vector>

namespace LAMMPS_NS {

// torch's default dtype set to the model's while it runs: code inside a model that makes
// tensors without a dtype (mace-torch's head mask) follows it, and in a Python process
// another library (mace-torch's float64 calculator) may have changed it
struct EgraffDefaultDtype {
  caffe2::TypeMeta previous;
  explicit EgraffDefaultDtype(torch::ScalarType t) : previous(c10::get_default_dtype())
  {
    c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(t));
  }
  ~EgraffDefaultDtype() { c10::set_default_dtype(previous); }
};

/* The one class of pair_style egraff. Its sources: pair_egraff.cpp (LAMMPS glue: settings,
   coeff, init_style, compute's dispatch, one model call, communication buffers, extract),
   pair_egraff_staged.cpp (the staged driver: check_stages, compute_staged), egraff_graph.*
   (edges, folding, chunks: pure functions), egraff_schema.h (metadata keys, method and mode
   names: generated by egraff_lmp/deploy/schema.py). */

class PairEgraff : public Pair {
 public:
  PairEgraff(class LAMMPS *);
  ~PairEgraff() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  void *extract(const char *, int &) override;

 protected:
  using Mode = EgraffSchema::Mode;

  torch::jit::Module model;
  // a compiled artifact (*.egraff.pt2, an AOTInductor package; null: TorchScript)
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;
  // its stages (mode staged): stage 0, then each layer's forward and backward programs
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package_embed;
  std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> package_fw, package_bw;
  std::string artifact;
  std::vector<std::string> type_names;    // element symbols in model order
  std::vector<int> type_map;              // LAMMPS type -> model type index (-1: unset)
  double r_max = 0.0;                     // Å
  // the unit style (init_style): style distance per Å, style energy per eV, and their ratio
  double length_unit = 1.0, energy_unit = 1.0, force_unit = 1.0;
  double cutoff() const { return r_max * length_unit; }    // r_max in the style's distance
  double ghost_cutoff = 0.0;              // Å, how far ghost atoms must reach
  int num_layers = 1;
  bool strictly_local = false;
  bool images_mode = false;               // one rank: ghosts folded onto their owners
  Mode mode_request = EgraffSchema::MODE_AUTO;    // what pair_style asked for
  Mode mode = EgraffSchema::MODE_AUTO;            // what init_style chose
  int stage_layers = 0;                   // message-passing layers of a staged artifact
  std::vector<int> feature_widths;        // x_k exchanged before layer k (model numbers)
  int skip_exchange = -1;                 // tests only: layer whose exchange is skipped
  torch::ScalarType model_dtype = torch::kFloat64;
  torch::Device device = torch::kCPU;     // where the model runs
  double *comm_buf = nullptr;             // features (or their gradients) of all atoms
  int comm_width = 0;                     // numbers per atom in comm_buf
  std::vector<double> exchange;           // storage of comm_buf
  double mode_value = 0.0;                // extract(EgraffSchema::EXTRACT_MODE)
  EgraffGraph::Edges graph;               // this step's edges (and shifts, images mode)
  std::vector<int> owner;                 // tag -> local index (images mode)

  int chunk_atoms = DEFAULT_CHUNK_ATOMS;  // centres per model call (0: one call)
  EgraffGraph::Chunks chunks;             // this step's chunks (chunked evaluations)
  static constexpr int DEFAULT_CHUNK_ATOMS = 512;

  void allocate();
  torch::Device choose_device(const std::string &);
  template <class Json> void check_compiled(const Json &meta);
  std::string head;                       // the head evaluated (empty: a model without heads)
  template <class Json> void select_head(const Json &meta, const std::string &asked);
  void set_units();
  void physical_warnings();
  bool warned = false;                    // physical_warnings() said its piece
  bool optimize_graph = false;            // TorchScript graph optimisation (keyword optimize)
  void tally_virial(const std::vector<int> &, const double *, double);
  // per-atom virials (compute stress/atom, centroid/stress/atom): calling convention 2
  int calling_convention = 1;             // the artifact's (KEY_CALLING_CONVENTION)
  bool atom_virial = false;               // this step tallies vatom / cvatom
  void check_atom_virial();
  void tally_atom_virial(const std::vector<int> &, const EgraffGraph::Edges &, const double *);
  void build_edges(int ncenter, bool fold);
  std::vector<int> model_atoms;           // atoms of a single model call (0..n-1)
  double compute_chunks(bool want_virial);
  static std::vector<torch::Tensor> pad_inputs(const torch::Tensor &pos, const torch::Tensor &types,
                                               const torch::Tensor &edge_index,
                                               const torch::Tensor &shift, int64_t n, double r_max);
  double evaluate(const std::vector<int> &atoms, int n_center, EgraffGraph::Edges &edges,
                  bool want_virial);

  // the committee (pair_egraff_committee.cpp): A1, A2, ... of pair_style egraff A0 A1 ...,
  // evaluated every devi_every steps only; A0 (this) drives the dynamics
  std::vector<std::unique_ptr<PairEgraff>> committee;
  bool member = false;                    // a committee member: the driver's neighbour list
  int devi_every = 0;                     // steps between deviations (0: no committee)
  std::string devi_file = "model_devi.out";
  double devi_relative = -1.0;            // relative EPS: force deviation / (|F| + EPS)
  bool devi_atomic = false;               // atomic: every atom's devi_f on each line, by id
  FILE *devi_fp = nullptr;
  bigint devi_last = -1;                  // the last step written (never twice)
  static constexpr int NDEVI = 7;         // pvector: max/min/avg f, e, max/min/avg v
  double devi[NDEVI] = {0, 0, 0, 0, 0, 0, 0};      // on every rank (extract)
  double devi_pv[NDEVI] = {0, 0, 0, 0, 0, 0, 0};   // pvector: rank 0's (compute pair sums)
  std::vector<double> f_before;           // atom->f before this style's forces (devi steps)
  bool ghost_lists = false;               // init_style: this model needs ghost neighbour lists
  void make_committee(const std::vector<std::string> &, const std::vector<std::string> &);
  void committee_deviation(double elocal);
  void open_devi_file();

  // the staged driver (pair_egraff_staged.cpp)
  struct StagedStep;
  void check_stages();
  void load_compiled_stages();
  std::vector<torch::Tensor> run_embed(const torch::Tensor &types);
  double compute_staged();
  double staged_without_atoms();
  void staged_inputs(StagedStep &);
  void staged_forward(StagedStep &);
  void staged_backward(StagedStep &);
  std::vector<torch::Tensor> scripted_vjp(StagedStep &, int k, int c, const torch::Tensor &g_x,
                                          const torch::Tensor &g_h);
  std::vector<torch::Tensor> compiled_vjp(StagedStep &, int k, int c, const torch::Tensor &g_x,
                                          const torch::Tensor &g_h);
  torch::Tensor exchange_buffer(int k, int ntotal);
  void forward_features(int k);
  void reverse_gradients(int k);
};

}    // namespace LAMMPS_NS

#endif
#endif
