/* Graph building for pair_style egraff: pure functions on plain arrays (no LAMMPS, no torch),
   so that they can be tested alone (egraff_graph_test.cpp, the CMake target
   egraff_graph_test; tests/test_graph.py builds and runs it).

   - build_edges(): the edges (i, j) within r_max of a LAMMPS-style full neighbour list, and
     with fold (one rank, mode images) every ghost neighbour replaced by its local owner plus
     the shift x_ghost - x_owner (owner_map() gives the owners from the atom IDs);
   - build_chunks(): spatial chunks of about chunk_atoms local centres, each with its atoms
     (centres first, then the neighbours its edges reach) and its edges in that numbering;
     one_chunk(): every atom in one chunk.

   Positions x are LAMMPS' (x[i][0..2], Å); edges are (i0, j0, i1, j1, ...) and shifts
   (s0x, s0y, s0z, s1x, ...) in Å: the edge vector of (i, j) is x[j] - x[i] + shift. */

#ifndef LMP_EGRAFF_GRAPH_H
#define LMP_EGRAFF_GRAPH_H

#include <cstdint>
#include <vector>

namespace LAMMPS_NS {
namespace EgraffGraph {

// edges (i, j) and their shifts, 2 and 3 numbers per edge
struct Edges {
  std::vector<int64_t> index;    // i0, j0, i1, j1, ...
  std::vector<double> shift;     // Å
  int64_t size() const { return (int64_t) index.size() / 2; }
};

// a full neighbour list as LAMMPS holds it: the neighbours of atom ilist[ii] are
// firstneigh[ilist[ii]][0 .. numneigh[ilist[ii]]), their low bits (neighmask) the index
struct NeighborList {
  const int *ilist;
  const int *numneigh;
  int *const *firstneigh;
  int neighmask;
};

// owner[tag] = the local index of the local atom with that ID (-1: none); tags are
// LAMMPS' atom IDs of the nlocal local atoms (tagint: int or int64_t)
template <typename Tag> void owner_map(const Tag *tag, int nlocal, std::vector<int> &owner);

// The edges (i, j) with |x[j] - x[i]| < r_max of the first ncenter atoms of the list, in
// list order, into out (cleared first). fold: a ghost neighbour j >= nlocal becomes its
// owner o = owner[tag[j]] with the shift x[j] - x[o]; without fold every shift is zero.
// Returns 0, or (fold) the ID of a ghost neighbour that has no local owner (out is then
// incomplete).
template <typename Tag>
int64_t build_edges(const double *const *x, const NeighborList &list, int ncenter, double r_max,
                    bool fold, int nlocal, const Tag *tag, const std::vector<int> &owner,
                    Edges &out);

// Chunks of a rank's atoms: atoms[c] lists chunk c's atoms (indices into x), its
// n_center[c] centres first, then every other atom its edges reach; edges[c] holds the edges
// of its centres in the chunk's numbering (0 .. atoms[c].size()), in the order of the input
// edges; slot is scratch (atom -> index in the chunk being built, -1 between calls).
struct Chunks {
  std::vector<std::vector<int>> atoms;
  std::vector<int> n_center;
  std::vector<Edges> edges;
  std::vector<int> slot;
  int size() const { return (int) atoms.size(); }
};

// Spatial chunks of about chunk_atoms (> 0) centres each: a k x k x k grid over the bounding
// box of the nlocal local atoms, k = max(1, round(cbrt(nlocal / chunk_atoms))), empty cells
// left out; centres in index order within their cell. The edges' i must be local (< nlocal),
// their j < ntotal.
void build_chunks(const double *const *x, int nlocal, int ntotal, int chunk_atoms,
                  const Edges &edges, Chunks &out);

// One chunk of all ntotal atoms, its nlocal first ones the centres, with the edges as given.
void one_chunk(int nlocal, int ntotal, const Edges &edges, Chunks &out);

}    // namespace EgraffGraph
}    // namespace LAMMPS_NS

#endif
