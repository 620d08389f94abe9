/* pair_style egraff: runs an egraff-lmp deployed artifact (TorchScript) inside LAMMPS.

   Syntax:   pair_style egraff ARTIFACT [chunk N]
             pair_coeff * * Ge Te        (element of each LAMMPS type, by symbol)

   chunk N: a strictly local model (Allegro) evaluates more than N local atoms in spatial
   chunks of about N centres each (default 512; 0: one call); see compute_chunks().

   Units metal (eV, Å). Requires newton pair on. The artifact's calling convention is
   documented in deploy/README.md: positions of local+ghost atoms, model type index, a full
   list of edges within r_max, zero edge shifts (ghosts are explicit), number of local atoms;
   it returns per-atom energies and forces on all atoms (ghost forces are summed back by
   LAMMPS' reverse communication). The virial comes from sum(r_i x f_i) over all atoms.
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
  std::vector<int64_t> edges;             // reused edge buffer (i0, j0, i1, j1, ...)
  std::vector<double> shifts;             // edge shifts (images mode), Å
  std::vector<int> owner;                 // tag -> local index (images mode)

  int chunk_atoms = DEFAULT_CHUNK_ATOMS;  // strictly local models: centres per model call
  std::vector<int> slot;                  // atom -> index in the current chunk (-1: none)
  static constexpr int DEFAULT_CHUNK_ATOMS = 512;

  void allocate();
  std::vector<int> model_atoms;           // atoms of a single model call (0..n-1)
  double compute_chunks(int64_t nedge, bool want_virial);
  double evaluate(const std::vector<int> &atoms, int n_center, std::vector<int64_t> &edge_buf,
                  std::vector<double> &shift_buf, bool want_virial);
};

}    // namespace LAMMPS_NS

#endif
#endif
