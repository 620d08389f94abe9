"""``egraff-lmp examples DEST``: copy the shipped examples out of the package."""

from __future__ import annotations

from ..errors import located


def add_parser(sub) -> None:
    p = sub.add_parser("examples", help="copy the example inputs, models and reference data",
                       description="Copy the example LAMMPS inputs (gete.in, ...), the shipped "
                       "GeTe models and the small reference data they use out of the installed "
                       "package into DEST, ready for 'egraff-lmp run DEST/gete.in'.")
    p.add_argument("dest", metavar="DEST", help="a new or empty directory")
    p.set_defaults(func=main)


def main(args) -> int:
    import shutil
    from pathlib import Path

    from ..resources import examples_dir

    dest = Path(args.dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise located(dest, "exists and is not an empty directory: give a new one")
    src = examples_dir()
    shutil.copytree(src, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"))
    print(f"copied the examples from {src} to {dest}; run one with: egraff-lmp run "
          f"{dest / 'gete.in'}")
    return 0
