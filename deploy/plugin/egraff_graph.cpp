/* Graph building for pair_style egraff: see egraff_graph.h. */

#include "egraff_graph.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace LAMMPS_NS {
namespace EgraffGraph {

template <typename Tag> void owner_map(const Tag *tag, int nlocal, std::vector<int> &owner)
{
  Tag maxtag = 0;
  for (int i = 0; i < nlocal; i++) maxtag = std::max(maxtag, tag[i]);
  owner.assign(maxtag + 1, -1);
  for (int i = 0; i < nlocal; i++) owner[tag[i]] = i;
}

template <typename Tag>
int64_t build_edges(const double *const *x, const NeighborList &list, int ncenter, double r_max,
                    bool fold, int nlocal, const Tag *tag, const std::vector<int> &owner,
                    Edges &out)
{
  const double cut2 = r_max * r_max;
  out.index.clear();
  out.shift.clear();
  for (int ii = 0; ii < ncenter; ii++) {
    const int i = list.ilist[ii];
    const int *jlist = list.firstneigh[i];
    const int jnum = list.numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      int j = jlist[jj] & list.neighmask;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz >= cut2) continue;
      double s[3] = {0.0, 0.0, 0.0};
      if (fold && j >= nlocal) {
        const int o = (tag[j] <= (Tag) owner.size() - 1) ? owner[tag[j]] : -1;
        if (o < 0) return (int64_t) tag[j];
        for (int d = 0; d < 3; d++) s[d] = x[j][d] - x[o][d];
        j = o;
      }
      out.index.push_back(i);
      out.index.push_back(j);
      out.shift.insert(out.shift.end(), s, s + 3);
    }
  }
  return 0;
}

void build_chunks(const double *const *x, int nlocal, int ntotal, int chunk_atoms,
                  const Edges &edges, Chunks &out)
{
  const int64_t nedge = edges.size();
  const int64_t *ij = edges.index.data();
  double lo[3], hi[3];
  for (int d = 0; d < 3; d++) {
    lo[d] = x[0][d];
    hi[d] = x[0][d];
  }
  for (int i = 1; i < nlocal; i++)
    for (int d = 0; d < 3; d++) {
      lo[d] = std::min(lo[d], x[i][d]);
      hi[d] = std::max(hi[d], x[i][d]);
    }
  const int k = std::max(1, (int) std::lround(std::cbrt((double) nlocal / chunk_atoms)));
  const int ngroups = k * k * k;
  std::vector<int> group(nlocal);
  for (int i = 0; i < nlocal; i++) {
    int c[3];
    for (int d = 0; d < 3; d++) {
      const double w = hi[d] - lo[d];
      c[d] = (w > 0.0) ? std::min(k - 1, (int) ((x[i][d] - lo[d]) / w * k)) : 0;
    }
    group[i] = (c[0] * k + c[1]) * k + c[2];
  }
  // counting sort of the centres and of the edges (by the group of their centre)
  std::vector<int64_t> atom_start(ngroups + 1, 0), edge_start(ngroups + 1, 0);
  for (int i = 0; i < nlocal; i++) atom_start[group[i] + 1]++;
  for (int64_t e = 0; e < nedge; e++) edge_start[group[ij[2 * e]] + 1]++;
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
    for (int64_t e = 0; e < nedge; e++) edge_order[b[group[ij[2 * e]]]++] = e;
  }

  std::vector<int> &slot = out.slot;
  slot.assign(ntotal, -1);
  out.atoms.clear();
  out.n_center.clear();
  out.edges.clear();
  for (int g = 0; g < ngroups; g++) {
    const int nc = (int) (atom_start[g + 1] - atom_start[g]);
    if (nc == 0) continue;
    std::vector<int> members;
    for (int64_t a = atom_start[g]; a < atom_start[g + 1]; a++) {
      slot[atom_order[a]] = (int) members.size();
      members.push_back(atom_order[a]);
    }
    Edges cedges;
    for (int64_t q = edge_start[g]; q < edge_start[g + 1]; q++) {
      const int64_t e = edge_order[q];
      const int j = (int) ij[2 * e + 1];
      if (slot[j] < 0) {
        slot[j] = (int) members.size();
        members.push_back(j);
      }
      cedges.index.push_back(slot[ij[2 * e]]);
      cedges.index.push_back(slot[j]);
      cedges.shift.insert(cedges.shift.end(), &edges.shift[3 * e], &edges.shift[3 * e] + 3);
    }
    for (int m : members) slot[m] = -1;
    out.atoms.push_back(std::move(members));
    out.n_center.push_back(nc);
    out.edges.push_back(std::move(cedges));
  }
}

void one_chunk(int nlocal, int ntotal, const Edges &edges, Chunks &out)
{
  out.atoms.assign(1, std::vector<int>(ntotal));
  std::iota(out.atoms[0].begin(), out.atoms[0].end(), 0);
  out.n_center.assign(1, nlocal);
  out.edges.assign(1, edges);
}

// tagint of LAMMPS_SMALLBIG and LAMMPS_BIGBIG
template void owner_map<int>(const int *, int, std::vector<int> &);
template void owner_map<int64_t>(const int64_t *, int, std::vector<int> &);
template int64_t build_edges<int>(const double *const *, const NeighborList &, int, double, bool,
                                  int, const int *, const std::vector<int> &, Edges &);
template int64_t build_edges<int64_t>(const double *const *, const NeighborList &, int, double,
                                      bool, int, const int64_t *, const std::vector<int> &,
                                      Edges &);

}    // namespace EgraffGraph
}    // namespace LAMMPS_NS
