"""``egraff-lmp datasets``: the registry and what is here, one dataset's sources, a fetch
from the study's repository, or the estimates of what the files do not store."""

from __future__ import annotations

from ..errors import EgraffError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "datasets", help="the study's datasets: list, show, fetch, estimate",
        description="list: the registry, each split present or missing (files under "
        "$EGRAFF_LMP_DATA, the cache, or shipped); show NAME: where every number comes "
        "from; fetch NAME: download from the study's repository (M3RG-IITD/MDBENCHGNN at "
        "e4ee1e9), verified by git blob id and size; estimate NAME: frame spacing and "
        "temperature from the reference frames themselves. Values marked * are estimated "
        "from the data.")
    p.add_argument("action", nargs="?", choices=["list", "show", "fetch", "estimate"],
                   default="list")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--dest", metavar="DIR", help="fetch: where to put the files (default: "
                   "~/.cache/egraff-lmp/datasets)")
    p.add_argument("--split", action="append", metavar="SPLIT",
                   help="fetch: only this split (repeatable)")
    p.set_defaults(func=main)


def _mark(d, field: str, text: str) -> str:
    return text + ("*" if field in d.estimated else "")


def main(args) -> int:
    from .. import datasets

    if args.action != "list" and not args.name:
        raise EgraffError(f"datasets {args.action} needs a NAME (see 'egraff-lmp datasets')")
    if args.action == "fetch":
        from ..fetch import fetch

        r = fetch(args.name, args.dest, args.split)
        for p in r.downloaded:
            print(f"downloaded and verified: {p}")
        for p in r.present:
            print(f"already here, verified:  {p}")
        for rel in r.absent:
            print(f"not in {datasets.REPOSITORY} at {datasets.COMMIT}: Datasets/{rel}")
        return 0
    if args.action == "show":
        d = datasets.get(args.name)
        print(f"{d.name}: {d.role}")
        print(f"  species {','.join(d.species)}; {'periodic' if d.periodic else 'molecule'}")
        print(f"  temperature {d.temperature:g} K; timestep {d.timestep_fs:g} fs; reference "
              f"frame spacing "
              f"{f'{d.frame_spacing_fs:g} fs' if d.contiguous else 'none (not a trajectory)'}")
        for key, text in d.sources.items():
            print(f"  {key}{' (estimated)' if key in d.estimated else ''}: {text}")
        present = datasets.present_splits(d)
        for split, files in d.splits.items():
            n = d.frames.get(split)
            where = [str(datasets.locate(f) or f"Datasets/{f} (missing)") for f in files]
            print(f"  split {split}{f' ({n} frames)' if n else ''}: "
                  f"{'present' if present[split] else 'MISSING'}: {'; '.join(where)}")
        print(f"  provenance: {d.provenance}")
        return 0
    if args.action == "estimate":
        from ..estimate import estimate_trajectory

        d = datasets.get(args.name)
        traj = datasets.read_split(d, d.reference_split)
        e = estimate_trajectory(traj, max_frames=1000)
        print(f"{d.name} {d.reference_split} split, {e.n_frames} frames: second difference / "
              f"step {e.smoothness:.3f} (below 0.5: a trajectory), {e.breaks} breaks")
        if e.contiguous:
            print(f"frame spacing {e.frame_spacing_fs:.3f} fs (fit R² {e.fit_r2:.2f}); kinetic "
                  f"temperature {e.temperature_k:.0f} K")
        else:
            print("not a time-ordered trajectory: no frame spacing or kinetic temperature")
        print(f"registry: frame spacing {d.frame_spacing_fs}, temperature {d.temperature:g} K")
        return 0
    print(f"{'name':<22} {'species':<9} {'T (K)':>6} {'dt (fs)':>7} {'spacing':>9}  splits "
          "(+ here, - missing)")
    for d in datasets.REGISTRY.values():
        spacing = _mark(d, "frame_spacing_fs",
                        f"{d.frame_spacing_fs:g} fs" if d.contiguous else "none")
        splits = " ".join(("+" if ok else "-") + s
                          for s, ok in datasets.present_splits(d).items())
        print(f"{d.name:<22} {','.join(d.species):<9} "
              f"{_mark(d, 'temperature', f'{d.temperature:g}'):>6} {d.timestep_fs:>7g} "
              f"{spacing:>9}  {splits}")
    print("* estimated from the data ('egraff-lmp datasets show NAME' says how)")
    print("data roots: " + ", ".join(str(r) for r in datasets.data_roots())
          + " (and the copies shipped in the package)")
    return 0
