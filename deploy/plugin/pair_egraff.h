/* pair_style egraff: runs an egraff-lmp deployed artifact (TorchScript) inside LAMMPS.

   Syntax:   pair_style egraff ARTIFACT [chunk N] [mode auto|images|ghosts|staged]
                                        [device cpu|cuda|cuda:N]
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
   skip_exchange K (tests only): leave the ghosts' layer-K features at zero instead of
   exchanging them, i.e. a wrong exchange that the tests must detect.

   Units metal (eV, Å). Requires newton pair on. The artifact's calling convention is
   documented in deploy/README.md: positions of local+ghost atoms, model type index, a full
   list of edges within r_max, zero edge shifts (ghosts are explicit), number of local atoms;
   it returns per-atom energies and forces on all atoms (ghost forces are summed back by
   LAMMPS' reverse communication). The virial is the plugin's own: sum(r_i x f_i) over the
   forces it adds (local and ghost atoms), or the model's in images mode. Units metal only;
   warnings in the log for type masses that are not those of pair_coeff's elements and for a
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

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

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
  torch::jit::Module model;
  std::string artifact;
  std::vector<std::string> type_names;    // element symbols in model order
  std::vector<int> type_map;              // LAMMPS type -> model type index (-1: unset)
  double r_max = 0.0;                     // Å
  double ghost_cutoff = 0.0;              // Å, how far ghost atoms must reach
  int num_layers = 1;
  bool strictly_local = false;
  bool images_mode = false;               // one rank: ghosts folded onto their owners
  enum Mode { AUTO, IMAGES, GHOSTS, STAGED };
  int mode_request = AUTO;                // what pair_style asked for
  int mode = AUTO;                        // what init_style chose
  int stage_layers = 0;                   // message-passing layers of a staged artifact
  std::vector<int> feature_widths;        // x_k exchanged before layer k (model numbers)
  int skip_exchange = -1;                 // tests only: layer whose exchange is skipped
  torch::ScalarType model_dtype = torch::kFloat64;
  torch::Device device = torch::kCPU;     // where the model runs
  double *comm_buf = nullptr;             // features (or their gradients) of all atoms
  int comm_width = 0;                     // numbers per atom in comm_buf
  std::vector<double> exchange;           // storage of comm_buf
  double mode_value = 0.0;                // extract("egraff_mode")
  std::vector<int64_t> edges;             // reused edge buffer (i0, j0, i1, j1, ...)
  std::vector<double> shifts;             // edge shifts (images mode), Å
  std::vector<int> owner;                 // tag -> local index (images mode)

  int chunk_atoms = DEFAULT_CHUNK_ATOMS;  // strictly local models: centres per model call
  std::vector<int> slot;                  // atom -> index in the current chunk (-1: none)
  std::vector<std::vector<int>> chunks;   // atoms of each chunk, its centres first
  std::vector<int> n_center;              // centres of each chunk
  std::vector<std::vector<int64_t>> chunk_edges;    // each chunk's edges, chunk numbering
  std::vector<std::vector<double>> chunk_shifts;
  static constexpr int DEFAULT_CHUNK_ATOMS = 512;

  void allocate();
  void check_stages();
  torch::Device choose_device(const std::string &);
  void physical_warnings();
  bool warned = false;                    // physical_warnings() said its piece
  bool optimize_graph = false;            // TorchScript graph optimisation (keyword optimize)
  void tally_virial(const std::vector<int> &, const double *, double);
  void build_edges(int ncenter, bool fold);
  double compute_staged(bool);
  std::vector<int> model_atoms;           // atoms of a single model call (0..n-1)
  void build_chunks(int64_t nedge);
  double compute_chunks(int64_t nedge, bool want_virial);
  double evaluate(const std::vector<int> &atoms, int n_center, std::vector<int64_t> &edge_buf,
                  std::vector<double> &shift_buf, bool want_virial);
};

}    // namespace LAMMPS_NS

#endif
#endif
