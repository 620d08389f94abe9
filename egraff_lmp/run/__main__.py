"""``python -m egraff_lmp.run SPEC.json``: execute one saved :class:`RunSpec` (what the
executors of ``egraff-lmp evaluate`` run: a thread pool, Dask workers, a Slurm array).
Exit 0 when the run finished, 2 with one line on stderr when it stopped or failed; the
run directory's ``run.json`` says which."""

from __future__ import annotations

import sys

from ..errors import EgraffError
from . import RunSpec, run


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m egraff_lmp.run SPEC.json", file=sys.stderr)
        return 2
    try:
        run(RunSpec.load(args[0]))
    except EgraffError as exc:
        print(f"egraff-lmp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
