/* Tests of pair_style egraff's graph building alone (egraff_graph.h), without LAMMPS or
   torch: the CMake target egraff_graph_test (not built by default), run by
   tests/test_graph.py. Exits 0 when every check holds, else 1 and names the failures. */

#include "egraff_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <vector>

using namespace LAMMPS_NS::EgraffGraph;

static int checks = 0, failures = 0;

#define CHECK(cond)                                                      \
  do {                                                                   \
    checks++;                                                            \
    if (!(cond)) {                                                       \
      failures++;                                                        \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
    }                                                                    \
  } while (0)

// atoms and a full neighbour list (every other atom) in LAMMPS' layout
struct System {
  std::vector<double> xs;    // 3 per atom
  std::vector<double *> x;
  std::vector<int> ilist, numneigh;
  std::vector<std::vector<int>> neigh;
  std::vector<int *> firstneigh;

  void add(double a, double b, double c) { xs.insert(xs.end(), {a, b, c}); }
  // neighbours of the first ncenter atoms: every other atom (flag: high bits set on some)
  void full_list(int ncenter, bool flag_bits)
  {
    const int n = (int) xs.size() / 3;
    x.resize(n);
    for (int i = 0; i < n; i++) x[i] = &xs[3 * i];
    ilist.resize(ncenter);
    numneigh.assign(n, 0);
    neigh.assign(n, {});
    firstneigh.assign(n, nullptr);
    for (int i = 0; i < ncenter; i++) {
      ilist[i] = i;
      for (int j = 0; j < n; j++)
        if (j != i) neigh[i].push_back(flag_bits && (j % 3 == 0) ? (j | (1 << 30)) : j);
      numneigh[i] = (int) neigh[i].size();
      firstneigh[i] = neigh[i].data();
    }
  }
  NeighborList list() const { return {ilist.data(), numneigh.data(), firstneigh.data(), 0x1FFFFFFF}; }
};

static void test_owner_map()
{
  const int tag[] = {3, 1, 2, 7};    // the 4th is a ghost's: not among the 3 local atoms
  std::vector<int> owner;
  owner_map(tag, 3, owner);
  CHECK(owner.size() == 4);
  CHECK(owner[0] == -1 && owner[1] == 1 && owner[2] == 2 && owner[3] == 0);
  const int64_t big[] = {5};
  owner_map(big, 1, owner);
  CHECK(owner.size() == 6 && owner[5] == 0 && owner[4] == -1);
}

static void test_edges_within_cutoff()
{
  System s;
  s.add(0, 0, 0);
  s.add(1, 0, 0);
  s.add(2.5, 0, 0);    // exactly r_max = 1.5 from atom 1: no edge (strictly within)
  s.add(0, 0.5, 0.8);
  s.full_list(4, true);
  Edges e;
  const std::vector<int> none;
  e.index = {9, 9};    // cleared first
  CHECK(build_edges<int>(s.x.data(), s.list(), 4, 1.5, false, 4, nullptr, none, e) == 0);
  // list order: centre by centre, neighbours in list order; the mask strips the flag bits
  const std::vector<int64_t> want = {0, 1, 0, 3, 1, 0, 1, 3, 3, 0, 3, 1};
  CHECK(e.index == want);
  CHECK(e.size() == 6 && e.shift.size() == 18);
  CHECK(std::all_of(e.shift.begin(), e.shift.end(), [](double v) { return v == 0.0; }));
  // only the first ncenter atoms are centres
  CHECK(build_edges<int>(s.x.data(), s.list(), 2, 1.5, false, 4, nullptr, none, e) == 0);
  CHECK(e.size() == 4 && e.index[6] == 1 && e.index[7] == 3);
}

static void test_fold_onto_owners()
{
  // a periodic box 4 Å long in x: local atoms 0 (x 0.5, tag 10) and 1 (x 3.5, tag 20), ghost
  // 2 the image of atom 0 at 4.5, ghost 3 the image of atom 1 at -0.5
  System s;
  s.add(0.5, 0, 0);
  s.add(3.5, 0, 0);
  s.add(4.5, 0, 0);
  s.add(-0.5, 0, 0);
  s.full_list(2, false);
  const int tag[] = {10, 20, 10, 20};
  std::vector<int> owner;
  owner_map(tag, 2, owner);
  Edges e;
  CHECK(build_edges(s.x.data(), s.list(), 2, 1.5, true, 2, tag, owner, e) == 0);
  // atom 0's neighbour: ghost 3 -> atom 1, shift -4; atom 1's: ghost 2 -> atom 0, shift +4
  const std::vector<int64_t> want = {0, 1, 1, 0};
  CHECK(e.index == want);
  const std::vector<double> shifts = {-4, 0, 0, 4, 0, 0};
  CHECK(e.shift == shifts);
  for (int64_t k = 0; k < e.size(); k++) {    // the edge vector is the ghost's
    const int64_t i = e.index[2 * k], j = e.index[2 * k + 1];
    CHECK(std::fabs(s.x[j][0] - s.x[i][0] + e.shift[3 * k] - 1.0 * (i == 0 ? -1 : 1)) < 1e-15);
  }
  // without fold the same ghosts stay ghosts, with zero shifts
  CHECK(build_edges(s.x.data(), s.list(), 2, 1.5, false, 2, tag, owner, e) == 0);
  const std::vector<int64_t> unfolded = {0, 3, 1, 2};
  CHECK(e.index == unfolded);
  // a ghost whose ID no local atom has: its ID is returned
  const int orphan[] = {10, 20, 10, 99};
  CHECK(build_edges(s.x.data(), s.list(), 2, 1.5, true, 2, orphan, owner, e) == 99);
}

// every input edge appears once among the chunks, with its shift, in input order per chunk
static void check_chunks(const System &s, int nlocal, int ntotal, const Edges &edges,
                         const Chunks &ch, int expect_chunks)
{
  CHECK(ch.size() == expect_chunks);
  CHECK((int) ch.n_center.size() == ch.size() && (int) ch.edges.size() == ch.size());
  std::vector<int> centre_of(nlocal, -1);
  int ncentres = 0;
  std::multiset<std::tuple<int64_t, int64_t, double, double, double>> seen, want;
  for (int c = 0; c < ch.size(); c++) {
    const std::vector<int> &atoms = ch.atoms[c];
    const int nc = ch.n_center[c];
    CHECK(nc > 0 && nc <= (int) atoms.size());
    CHECK(std::set<int>(atoms.begin(), atoms.end()).size() == atoms.size());    // no repeats
    CHECK(std::is_sorted(atoms.begin(), atoms.begin() + nc));    // centres in index order
    for (int a = 0; a < nc; a++) {
      CHECK(atoms[a] < nlocal && centre_of[atoms[a]] < 0);
      centre_of[atoms[a]] = c;
    }
    ncentres += nc;
    const Edges &e = ch.edges[c];
    CHECK(e.shift.size() == 3 * (size_t) e.size());
    int64_t previous = -1;
    for (int64_t k = 0; k < e.size(); k++) {
      const int64_t i = e.index[2 * k], j = e.index[2 * k + 1];
      CHECK(i >= 0 && i < nc && j >= 0 && j < (int64_t) atoms.size());
      seen.insert({atoms[i], atoms[j], e.shift[3 * k], e.shift[3 * k + 1], e.shift[3 * k + 2]});
      // input order: find this edge's position among the input edges after the previous one
      int64_t at = previous + 1;
      while (at < edges.size() &&
             !(edges.index[2 * at] == atoms[i] && edges.index[2 * at + 1] == atoms[j]))
        at++;
      CHECK(at < edges.size());
      previous = at;
    }
    // every atom beyond the centres is reached by an edge of the chunk
    std::set<int64_t> reached;
    for (int64_t k = 0; k < e.size(); k++) reached.insert(e.index[2 * k + 1]);
    for (int a = nc; a < (int) atoms.size(); a++) CHECK(reached.count(a) == 1);
  }
  CHECK(ncentres == nlocal);
  for (int64_t k = 0; k < edges.size(); k++)
    want.insert({edges.index[2 * k], edges.index[2 * k + 1], edges.shift[3 * k],
                 edges.shift[3 * k + 1], edges.shift[3 * k + 2]});
  CHECK(seen == want);
  CHECK((int) ch.slot.size() == ntotal);
  CHECK(std::all_of(ch.slot.begin(), ch.slot.end(), [](int v) { return v == -1; }));
  (void) s;
}

static void test_chunks()
{
  // 1000 local atoms jittered on a 10 x 10 x 10 grid of 1 Å, 200 ghosts around it
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> jitter(-0.2, 0.2), out(-1.5, 11.5);
  System s;
  for (int a = 0; a < 10; a++)
    for (int b = 0; b < 10; b++)
      for (int c = 0; c < 10; c++) s.add(a + jitter(rng), b + jitter(rng), c + jitter(rng));
  const int nlocal = 1000;
  for (int g = 0; g < 200; g++) s.add(out(rng), out(rng), -1.0 + jitter(rng));
  const int ntotal = 1200;
  s.full_list(nlocal, false);
  Edges edges;
  const std::vector<int> none;
  CHECK(build_edges<int>(s.x.data(), s.list(), nlocal, 1.6, false, nlocal, nullptr, none, edges) == 0);
  CHECK(edges.size() > 6 * nlocal);
  for (size_t k = 0; k < edges.shift.size(); k++) edges.shift[k] = 0.001 * (double) k;    // carried along

  Chunks ch;
  // 1000 / 100 atoms: k = round(cbrt(10)) = 2, 8 cells of ~125 centres
  build_chunks(s.x.data(), nlocal, ntotal, 100, edges, ch);
  check_chunks(s, nlocal, ntotal, edges, ch, 8);
  // the centres of a chunk lie in one cell of the local atoms' bounding box
  double lo[3] = {1e9, 1e9, 1e9}, hi[3] = {-1e9, -1e9, -1e9};
  for (int i = 0; i < nlocal; i++)
    for (int d = 0; d < 3; d++) {
      lo[d] = std::min(lo[d], s.x[i][d]);
      hi[d] = std::max(hi[d], s.x[i][d]);
    }
  for (int c = 0; c < ch.size(); c++) {
    std::set<std::tuple<int, int, int>> cells;
    for (int a = 0; a < ch.n_center[c]; a++) {
      const double *r = s.x[ch.atoms[c][a]];
      int cell[3];
      for (int d = 0; d < 3; d++)
        cell[d] = std::min(1, (int) ((r[d] - lo[d]) / (hi[d] - lo[d]) * 2));
      cells.insert({cell[0], cell[1], cell[2]});
    }
    CHECK(cells.size() == 1);
  }
  // 1000 / 40: k = round(2.92) = 3, 27 cells
  build_chunks(s.x.data(), nlocal, ntotal, 40, edges, ch);
  check_chunks(s, nlocal, ntotal, edges, ch, 27);
  // 1000 / 700: k = 1, one chunk of every centre
  build_chunks(s.x.data(), nlocal, ntotal, 700, edges, ch);
  check_chunks(s, nlocal, ntotal, edges, ch, 1);
  CHECK(ch.n_center[0] == nlocal);

  // one_chunk: every atom, centres first, the edges as given
  one_chunk(nlocal, ntotal, edges, ch);
  CHECK(ch.size() == 1 && ch.n_center[0] == nlocal && (int) ch.atoms[0].size() == ntotal);
  bool iota = true;
  for (int a = 0; a < ntotal; a++) iota = iota && ch.atoms[0][a] == a;
  CHECK(iota);
  CHECK(ch.edges[0].index == edges.index && ch.edges[0].shift == edges.shift);
}

static void test_chunks_of_a_flat_system()
{
  // every atom at the same z (a zero-width box along z): cells along z collapse to one
  System s;
  for (int a = 0; a < 8; a++)
    for (int b = 0; b < 8; b++) s.add(a, b, 0.0);
  s.full_list(64, false);
  Edges edges;
  const std::vector<int> none;
  CHECK(build_edges<int>(s.x.data(), s.list(), 64, 1.1, false, 64, nullptr, none, edges) == 0);
  CHECK(edges.size() == 2 * 2 * 8 * 7);    // grid bonds, both directions
  Chunks ch;
  build_chunks(s.x.data(), 64, 64, 8, edges, ch);    // k = 2: 4 cells in x, y; z empty
  check_chunks(s, 64, 64, edges, ch, 4);
}

int main()
{
  test_owner_map();
  test_edges_within_cutoff();
  test_fold_onto_owners();
  test_chunks();
  test_chunks_of_a_flat_system();
  std::printf("egraff_graph_test: %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
