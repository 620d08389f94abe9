"""``egraff-lmp datasets``: the registry, or fetch one dataset."""

from __future__ import annotations

from ..errors import EgraffError


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="the study's datasets: list, or fetch from Zenodo",
                       description="List the registry (species, temperature, timestep, "
                       "splits, local availability) or download a dataset from the study's "
                       "Zenodo record 10678029 with checksums.")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--dest", metavar="DIR", help="where to put fetched files")
    p.set_defaults(func=main)


def main(args) -> int:
    from .. import datasets

    if args.action == "fetch":
        if not args.name:
            raise EgraffError("datasets fetch needs a NAME (see 'egraff-lmp datasets')")
        for p in datasets.fetch(args.name, args.dest):
            print(p)
        return 0
    print(f"{'name':<20} {'species':<10} {'T (K)':>7} {'dt (fs)':>8} {'spacing':>8}  "
          "local  role")
    for d in datasets.REGISTRY.values():
        spacing = f"{d.frame_spacing_fs:g} fs" if d.contiguous else "decorr."
        print(f"{d.name:<20} {','.join(d.species):<10} {d.temperature:>7g} "
              f"{d.timestep_fs:>8g} {spacing:>8}  {'yes' if datasets.available(d) else 'no':<5}"
              f"  {d.role}")
    print("data roots: " + ", ".join(str(r) for r in datasets.data_roots()))
    return 0
