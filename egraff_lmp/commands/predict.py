"""``egraff-lmp predict``: an artifact's energies and forces on a trajectory's frames."""

from __future__ import annotations

from .options import open_trajectory, reader_options


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="evaluate a deployed model on a trajectory's frames",
                       description="Energies and forces of ARTIFACT on the frames of TRAJ, "
                       "written as a NequIP npz; 'egraff-lmp compare OUT --ref TRAJ' then "
                       "gives the static energy/force MAE.")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("traj", metavar="TRAJ")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    p.add_argument("--head", metavar="NAME",
                   help="the head of a multi-head artifact to evaluate (default: its default "
                   "head, or its only one)")
    reader_options(p)
    g = p.add_argument_group("frames")
    g.add_argument("--start", type=int)
    g.add_argument("--stop", type=int)
    g.add_argument("--step", type=int)
    p.set_defaults(func=main)


def main(args) -> int:
    import time

    from ..calculator import DeployedCalculator
    from ..predict import predict, write_npz

    calc = DeployedCalculator(args.artifact, head=args.head)
    traj = open_trajectory(args, args.traj)
    t0 = time.perf_counter()
    n = write_npz(args.output, traj, predict(calc, traj, args.start, args.stop, args.step))
    dt = time.perf_counter() - t0
    print(f"wrote {args.output}: {n} frames of {traj.n_atoms} atoms "
          f"({1000 * dt / max(n, 1):.1f} ms per frame)")
    return 0
