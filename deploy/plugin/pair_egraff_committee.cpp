/* pair_style egraff, the committee: pair_style egraff A0 A1 A2 ... devi_every N [devi_file F]
   [atomic] [relative EPS].

   A0 drives the dynamics. A1, A2, ... are PairEgraff objects of their own (each chooses
   its own mode, may be compiled or not, must know the pair_coeff species), sharing A0's
   neighbour list (its cutoff and ghost shell are the committee's largest); they are
   evaluated every N steps only, on atom->f of their own: A0's forces are put aside, each
   member's forces computed into a zeroed array and summed home with LAMMPS' own reverse
   communication, then A0's restored, so the dynamics see A0 alone.

   The deviation over the M models (A0 included), as deepmd-kit's model_devi.out has it:
   per atom, the force deviation d_i = sqrt(mean_m |F_i^m - <F_i>|^2) (relative EPS: over
   |<F_i>| + EPS), its max, min and mean over all atoms; the energy deviation, the standard
   deviation of the M total energies over the number of atoms; the virial deviation, the
   standard deviation of each of the 6 components over the number of atoms, its max, min
   and mean. All in the style's units (metal: eV/A and eV). Rank 0 writes one line per
   deviation step to devi_file and every rank keeps the values in pvector (compute pair
   egraff: c_ID[1..7], the vector summed over ranks, so all but rank 0 hold zeros there)
   and extract("egraff_devi"). atomic (deepmd-kit's keyword): each line goes on with the
   force deviation d_i of every atom, in the order of atom ids 1..natoms (gathered on rank
   0; ids must be consecutive, as atom_modify map needs no holes). A step is never written twice; on opening, the file keeps
   the lines of earlier steps only (a run continued from a restart appends after them). */

#include "pair_egraff.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "update.h"
#include "utils.h"

#include <mpi.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace LAMMPS_NS;

/* The members, from the artifacts after the first and the keywords they share (chunk,
   optimize, device, head). */

void PairEgraff::make_committee(const std::vector<std::string> &members, const std::vector<std::string> &shared)
{
  committee.clear();
  if (members.empty()) {
    if (devi_every > 0) error->all(FLERR, "pair_style egraff: devi_every needs a committee: pair_style egraff A0 A1 [A2 ...] devi_every N");
    nextra = 0;
    return;
  }
  if (devi_every == 0)
    error->all(FLERR, "pair_style egraff: a committee of {} models needs devi_every N (the steps between deviations)", members.size() + 1);
  for (const std::string &path : members) {
    auto m = std::make_unique<PairEgraff>(lmp);
    m->member = true;
    std::vector<std::string> words{path};
    words.insert(words.end(), shared.begin(), shared.end());
    std::vector<char *> argv;
    for (auto &w : words) argv.push_back(const_cast<char *>(w.c_str()));
    m->settings((int) argv.size(), argv.data());
    // the exchange buffers LAMMPS sizes from this style serve the members too
    comm_forward = MAX(comm_forward, m->comm_forward);
    comm_reverse = MAX(comm_reverse, m->comm_reverse);
    committee.push_back(std::move(m));
  }
  nextra = NDEVI;
  pvector = devi_pv;
}

/* devi_file on rank 0: the header, the lines of steps before this one kept. */

void PairEgraff::open_devi_file()
{
  std::string kept;
  {
    std::ifstream in(devi_file);
    std::string line;
    while (in && std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream words(line);
      bigint step;
      if (words >> step && step < update->ntimestep) kept += line + "\n";
    }
  }
  devi_fp = fopen(devi_file.c_str(), "w");
  if (!devi_fp) error->one(FLERR, "pair_style egraff: cannot write devi_file {}: {}", devi_file, utils::getsyserror());
  fmt::print(devi_fp, "# pair_style egraff committee of {} models ({}), units {}: forces {}, energies and virials {} per atom\n",
             committee.size() + 1, artifact, update->unit_style,
             strcmp(update->unit_style, "metal") == 0 ? "eV/A" : "force units",
             strcmp(update->unit_style, "metal") == 0 ? "eV" : "energy units");
  fmt::print(devi_fp, "#{:>11} {:>18} {:>18} {:>18} {:>18} {:>18} {:>18} {:>18}{}\n", "step", "max_devi_v",
             "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e",
             devi_atomic ? fmt::format("  devi_f of atoms 1..{} (by id)", atom->natoms) : "");
  fputs(kept.c_str(), devi_fp);
  fflush(devi_fp);
}

/* The members' forces, energies and virials on this step and the deviation over the
   committee (collective: every rank takes part). elocal: A0's energy of the local atoms
   (the style's units). */

void PairEgraff::committee_deviation(double elocal)
{
  const int nlocal = atom->nlocal, ntotal = nlocal + atom->nghost;
  const int nmodel = (int) committee.size() + 1;
  double **f = atom->f;
  double *fa = ntotal ? &f[0][0] : nullptr;
  const size_t n3 = 3 * (size_t) ntotal;
  // A0's forces on the atoms: what this style added, ghosts summed home on a copy
  std::vector<double> f_after(fa, fa + n3);
  for (size_t k = 0; k < n3; k++) fa[k] = f_after[k] - f_before[k];
  comm->reverse_comm();
  std::vector<double> forces((size_t) nmodel * 3 * nlocal);
  std::copy(fa, fa + 3 * (size_t) nlocal, forces.begin());
  // energy and 6 virial components of each model, this rank's share
  std::vector<double> ev((size_t) nmodel * 7, 0.0), ev_all((size_t) nmodel * 7);
  ev[0] = elocal;
  for (int c = 0; c < 6; c++) ev[1 + c] = virial[c];
  for (int m = 1; m < nmodel; m++) {
    PairEgraff &p = *committee[m - 1];
    std::fill(fa, fa + n3, 0.0);
    p.list = list;
    p.compute(ENERGY_GLOBAL, VIRIAL_PAIR);
    comm->reverse_comm();
    std::copy(fa, fa + 3 * (size_t) nlocal, forces.begin() + (size_t) m * 3 * nlocal);
    ev[7 * m] = p.eng_vdwl;
    for (int c = 0; c < 6; c++) ev[7 * m + 1 + c] = p.virial[c];
  }
  std::copy(f_after.begin(), f_after.end(), fa);    // the dynamics see A0 alone

  // per atom: the spread of the models' forces
  double fmax = 0.0, fmin = INFINITY, fsum = 0.0;
  std::vector<double> by_id;
  if (devi_atomic) {
    if (atom->natoms > 100000000 || !atom->tag_consecutive())
      error->all(FLERR, "pair_style egraff: atomic needs atom ids 1..N without holes (N <= 1e8; here N = {})", atom->natoms);
    by_id.assign((size_t) atom->natoms, 0.0);
  }
  for (int i = 0; i < nlocal; i++) {
    double mean[3] = {0.0, 0.0, 0.0};
    for (int m = 0; m < nmodel; m++)
      for (int d = 0; d < 3; d++) mean[d] += forces[((size_t) m * nlocal + i) * 3 + d] / nmodel;
    double var = 0.0;
    for (int m = 0; m < nmodel; m++)
      for (int d = 0; d < 3; d++) {
        const double x = forces[((size_t) m * nlocal + i) * 3 + d] - mean[d];
        var += x * x / nmodel;
      }
    double dev = std::sqrt(var);
    if (devi_relative > 0.0)
      dev /= std::sqrt(mean[0] * mean[0] + mean[1] * mean[1] + mean[2] * mean[2]) + devi_relative;
    fmax = MAX(fmax, dev);
    fmin = MIN(fmin, dev);
    fsum += dev;
    if (devi_atomic) by_id[atom->tag[i] - 1] = dev;
  }
  if (devi_atomic) {
    std::vector<double> mine(by_id);
    MPI_Reduce(mine.data(), by_id.data(), (int) by_id.size(), MPI_DOUBLE, MPI_SUM, 0, world);
  }
  double g[3];
  MPI_Allreduce(&fmax, &g[0], 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&fmin, &g[1], 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(&fsum, &g[2], 1, MPI_DOUBLE, MPI_SUM, world);
  MPI_Allreduce(ev.data(), ev_all.data(), 7 * nmodel, MPI_DOUBLE, MPI_SUM, world);
  const double natoms = (double) atom->natoms;

  // over the models: the standard deviation of each global quantity, per atom
  auto spread = [&](int c) {
    double mean = 0.0, var = 0.0;
    for (int m = 0; m < nmodel; m++) mean += ev_all[7 * m + c] / nmodel;
    for (int m = 0; m < nmodel; m++) var += (ev_all[7 * m + c] - mean) * (ev_all[7 * m + c] - mean) / nmodel;
    return std::sqrt(var) / natoms;
  };
  double vmax = 0.0, vmin = INFINITY, vsum = 0.0;
  for (int c = 1; c <= 6; c++) {
    const double s = spread(c);
    vmax = MAX(vmax, s);
    vmin = MIN(vmin, s);
    vsum += s;
  }
  devi[0] = g[0];
  devi[1] = g[1];
  devi[2] = g[2] / natoms;
  devi[3] = spread(0);
  devi[4] = vmax;
  devi[5] = vmin;
  devi[6] = vsum / 6.0;
  devi_last = update->ntimestep;
  for (int c = 0; c < NDEVI; c++) devi_pv[c] = comm->me == 0 ? devi[c] : 0.0;
  if (!std::isfinite(devi[0]) || !std::isfinite(devi[3]))
    error->all(FLERR, "pair_style egraff: the committee's deviation is not finite at step {} (a member returned NaN/inf)", update->ntimestep);
  if (comm->me == 0) {
    if (!devi_fp) open_devi_file();
    fmt::print(devi_fp, "{:>12} {:18.10e} {:18.10e} {:18.10e} {:18.10e} {:18.10e} {:18.10e} {:18.10e}", update->ntimestep,
               devi[4], devi[5], devi[6], devi[0], devi[1], devi[2], devi[3]);
    for (double d : by_id) fmt::print(devi_fp, " {:.6e}", d);
    fputs("\n", devi_fp);
    fflush(devi_fp);
  }
}
