"""``egraff-lmp analyze``: total and partial RDFs of a trajectory."""

from __future__ import annotations

from .options import open_trajectory, outputs, rdf_options, reader_options


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="RDFs of a trajectory",
                       description="Total and partial RDFs of a trajectory (JSON keys: r, rdf, "
                       "n_frames, n_atoms).")
    p.add_argument("traj", metavar="TRAJ")
    reader_options(p)
    rdf_options(p)
    outputs(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from ..analysis import RDF
    from ..files import write_json

    traj = open_trajectory(args, args.traj)
    res = RDF(traj, rmax=args.rmax, dr=args.dr, n_threads=args.threads,
              verbose=args.progress).run(args.start, args.stop, args.step).results
    out = {"r": res.r, "rdf": res.rdf, "n_frames": res.n_frames, "n_atoms": res.n_atoms,
           "rmax": res.rmax, "dr": res.dr, "normalisation": res.normalisation,
           "trajectory": str(traj.path), "species": traj.species}
    if args.json:
        write_json(args.json, out)
    if args.plot:
        from ..plot import plot_rdf

        plot_rdf(res.r, res.rdf, args.plot, title=str(args.traj),
                 normalisation=res.normalisation)
    print(f"{traj.path}: {res.n_frames} frames, {res.n_atoms} atoms "
          f"({','.join(traj.species)}), r_max {res.rmax:g} Å, dr {res.dr:g} Å")
    print(f"{'pair':<8} {'first peak (Å)':>15} {'height':>8}")
    for key, g in res.rdf.items():
        k = int(g.argmax())
        print(f"{key:<8} {res.r[k]:>15.3f} {g[k]:>8.3f}")
    return 0
