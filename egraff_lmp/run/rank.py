"""One MPI rank of a run on several: ``python -m egraff_lmp.run.rank JOB.json`` under
mpiexec (:func:`egraff_lmp.run.launch.launch` starts it). ``JOB.json`` holds the run spec,
the plugin, the restart to resume from, where rank 0 writes its status and whether its
progress goes to a terminal.

A module of its own, which the package does not import, so that ``python -m`` runs it
fresh (runpy warns about a module the package has imported already).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import EgraffError
from .launch import in_process
from .record import RunSpec


def main(argv=None):
    """One rank under mpiexec: ``JOB.json`` holds the run spec, the plugin, the restart to
    resume from, where rank 0 writes its status and whether its progress goes to a
    terminal."""
    from .engines import PluginEngine

    job = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    spec = RunSpec.from_dict(job["spec"])
    engine = PluginEngine(job["plugin"], spec.pair_mode, spec.device)
    try:
        out = in_process(spec, engine, job.get("resume"), job.get("tty")).to_dict()
    except EgraffError as exc:
        out = {"error": str(exc)}
    if int(os.environ.get("PMI_RANK", "0")) == 0:
        Path(job["status_file"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
