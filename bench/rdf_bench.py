"""RDF benchmark (issue 2): egraff-lmp vs MDAnalysis InterRDF vs freud, side by side.

The GeTe4 CPMD reference (inputs/gete, test + val splits) replicated 3×3×3 (5,400 atoms,
57.3 Å cube) and written by real LAMMPS as a text dump of 400 frames. Every tool computes
the total RDF and the three partials (Ge-Ge, Ge-Te, Te-Te) with r_max = 10 Å, dr = 0.05 Å,
serially (one thread each). Printed: frames/s, ratios, agreement of the results, and the peak
memory of egraff-lmp's RDF on 200 vs 400 frames (each in a fresh process).

    python bench/rdf_bench.py [--frames 60] [--workdir /tmp/egraff-bench]

Timings are medians of --repeat runs; a 2-core machine is noisy.
"""

from __future__ import annotations

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egraff_lmp.analysis import RDF  # noqa: E402
from egraff_lmp.io import read_trajectory  # noqa: E402
from egraff_lmp.trajectory import Frame, MemoryTrajectory  # noqa: E402

RMAX, DR = 10.0, 0.05
NBINS = int(round(RMAX / DR))
REPLICAS = 3
PAIRS = (("Ge", "Ge"), ("Ge", "Te"), ("Te", "Te"))


def replicated_frames(n_frames):
    """GeTe frames replicated REPLICAS³ times (positions Å), cell, symbols."""
    test, val = (np.load(ROOT / "inputs" / "gete" / f) for f in ("gete_test.npz",
                                                                  "gete_val.npz"))
    pos = np.concatenate([test["pos"], val["pos"]])[:n_frames]
    length = float(test["cell"][0, 0])
    shifts = np.array([[i, j, k] for i in range(REPLICAS) for j in range(REPLICAS)
                       for k in range(REPLICAS)], dtype=float) * length
    big = np.concatenate([pos + s for s in shifts], axis=1)
    from ase.data import chemical_symbols

    symbols = [chemical_symbols[z] for z in np.tile(test["atomic_numbers"], len(shifts))]
    return big, np.eye(3) * length * REPLICAS, symbols


def write_dump(workdir, n_frames):
    from egraff_lmp.io.lammps_write import write_lammps_dump

    dump = workdir / f"gete_x{REPLICAS}_{n_frames}.lammpstrj"
    if not dump.exists():
        pos, cell, symbols = replicated_frames(n_frames)
        frames = (Frame(i, p, cell, (True,) * 3) for i, p in enumerate(pos))
        t0 = time.perf_counter()
        write_lammps_dump(dump, frames, symbols, float_format="%.6f")
        print(f"wrote {dump} with LAMMPS in {time.perf_counter() - t0:.1f} s "
              f"({dump.stat().st_size / 1e6:.0f} MB)")
    return dump


# -- the three tools; each returns {"total": g, "Ge-Ge": g, ...} in its own convention ----

def ours(traj, n):
    return RDF(traj, rmax=RMAX, dr=DR, n_threads=1).run(0, n).results.rdf


def mdanalysis(universe, n):
    """InterRDF once for the total and once per pair (InterRDF_s would hold an array per
    atom pair: 4,320² × 200 bins for Te-Te, far beyond memory)."""
    from MDAnalysis.analysis.rdf import InterRDF

    groups = {"Ge": universe.select_atoms("type 1"), "Te": universe.select_atoms("type 2")}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, a, b in [("total", universe.atoms, universe.atoms)] + [
                (f"{x}-{y}", groups[x], groups[y]) for x, y in PAIRS]:
            out[key] = InterRDF(a, b, nbins=NBINS, range=(0, RMAX),
                                exclusion_block=(1, 1) if a == b else None).run(0, n
                                                                                ).results.rdf
    return out


def freud_rdf(frames, cell, types):
    import freud

    box = freud.box.Box.from_matrix(cell.T)
    total = freud.density.RDF(bins=NBINS, r_max=RMAX)
    parts = {f"{a}-{b}": freud.density.RDF(bins=NBINS, r_max=RMAX) for a, b in PAIRS}
    masks = {"Ge": types == "Ge", "Te": types == "Te"}
    for pos in frames:
        x = box.wrap(pos - cell.sum(axis=0) / 2)
        total.compute((box, x), reset=False)
        for a, b in PAIRS:
            pa, pb = x[masks[a]], x[masks[b]]
            if a == b:
                parts[f"{a}-{b}"].compute((box, pb), reset=False)
            else:
                parts[f"{a}-{b}"].compute((box, pb), query_points=pa, reset=False)
    return {"total": total.rdf, **{k: v.rdf for k, v in parts.items()}}


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


#: tools whose A-A (and total) RDF carries the factor (N_A - 1)/N_A relative to ours
FINITE_SIZE_FACTOR = {"freud (serial)"}


def agreement(name, a, b, n_atoms_of):
    """Max |Δg| over bins after putting tool ``name``'s result ``b`` into our convention."""
    out = {}
    for key in a:
        sp = key.split("-")
        scale = 1.0
        if name in FINITE_SIZE_FACTOR and (key == "total" or sp[0] == sp[1]):
            n = n_atoms_of(None if key == "total" else sp[0])
            scale = n / (n - 1)
        out[key] = float(np.abs(a[key] - b[key] * scale).max()) if key in b else None
    return out


def peak_rss_mb(dump, n):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r});"
            "from egraff_lmp.io import read_trajectory; from egraff_lmp.analysis import RDF;"
            f"RDF(read_trajectory({str(dump)!r}), rmax={RMAX}, dr={DR}, n_threads=1)"
            f".run(0, {n});"
            "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60,
                    help="frames timed from the dump for each tool (default 60)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/egraff-bench"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import freud
    import MDAnalysis as mda

    freud.parallel.set_num_threads(1)
    dump = write_dump(args.workdir, 400)
    n = args.frames
    traj = read_trajectory(dump)
    symbols = np.array(traj.symbols)
    n_of = {None: len(symbols), "Ge": int(np.sum(symbols == "Ge")),
            "Te": int(np.sum(symbols == "Te"))}
    print(f"system: {len(symbols)} atoms, {traj.n_frames} frames in the dump; r_max {RMAX} Å, "
          f"dr {DR} Å; total + 3 partial RDFs; serial; {n} frames timed, median of "
          f"{args.repeat}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(dump), format="LAMMPSDUMP", dt=1.0)
    cell = np.asarray(u.trajectory[0].triclinic_dimensions, dtype=float)

    # 1. end to end: from the dump file to the RDFs
    def freud_from_dump():
        return freud_rdf((ts.positions.astype(float) for ts in u.trajectory[:n]), cell,
                         symbols)

    rows = {}
    rows["egraff-lmp"] = timed(lambda: ours(read_trajectory(dump), n), args.repeat)
    rows["MDAnalysis InterRDF"] = timed(lambda: mdanalysis(u, n), args.repeat)
    rows["freud (serial)"] = timed(freud_from_dump, args.repeat)

    # 2. compute only: the same frames already in memory (float64)
    pos = np.stack([ts.positions.astype(float) for ts in u.trajectory[:n]])
    mem = MemoryTrajectory.from_positions(pos, symbols, cell)
    from MDAnalysis.coordinates.memory import MemoryReader

    um = mda.Universe.empty(len(symbols), trajectory=True)
    um.add_TopologyAttr("type", ["1" if s == "Ge" else "2" for s in symbols])
    um.load_new(pos.astype(np.float32), format=MemoryReader,
                dimensions=[cell[0, 0], cell[1, 1], cell[2, 2], 90, 90, 90])
    crows = {}
    crows["egraff-lmp"] = timed(lambda: ours(mem, n), args.repeat)
    crows["MDAnalysis InterRDF"] = timed(lambda: mdanalysis(um, n), args.repeat)
    crows["freud (serial)"] = timed(lambda: freud_rdf(pos, cell, symbols), args.repeat)

    report = {"atoms": len(symbols), "frames": n, "end_to_end": {}, "compute_only": {}}
    for title, table, key in (("end to end (read dump + RDF)", rows, "end_to_end"),
                              ("compute only (frames in memory)", crows, "compute_only")):
        base = table["egraff-lmp"][0]
        print(f"\n{title}")
        print(f"{'tool':<22} {'s':>8} {'frames/s':>9} {'time / egraff-lmp':>18} "
              f"{'max |Δg| vs egraff-lmp':>24}")
        for name, (t, res) in table.items():
            diff = agreement(name, table["egraff-lmp"][1], res, n_of.get)
            worst = max(v for v in diff.values() if v is not None)
            print(f"{name:<22} {t:>8.2f} {n / t:>9.1f} {t / base:>18.2f} {worst:>24.2e}")
            report[key][name] = {"seconds": t, "frames_per_s": n / t, "ratio": t / base,
                                 "max_abs_dg": diff}

    m200, m400 = peak_rss_mb(dump, 200), peak_rss_mb(dump, 400)
    print(f"\npeak memory of egraff-lmp RDF from the dump: 200 frames {m200:.0f} MB, "
          f"400 frames {m400:.0f} MB (ratio {m400 / m200:.2f})")
    report["peak_rss_mb"] = {"200": m200, "400": m400}
    (args.workdir / "rdf_bench.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
