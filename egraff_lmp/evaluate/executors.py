"""Independent runs through existing executors; each task is one :class:`RunSpec`, run in a
process of its own (``python -m egraff_lmp.run SPEC.json``: LAMMPS, MPI and torch state stay
apart).

- ``--jobs N``: :class:`concurrent.futures.ThreadPoolExecutor` on this machine (the threads
  only wait for the run processes);
- ``--dask-scheduler ADDRESS``: a Dask distributed cluster (``Client(ADDRESS).map``); the
  workers need egraff-lmp installed and the evaluation directory on a shared file system;
- ``--slurm``: a Slurm job array script, one array element per run, written beside the
  task list; after the array has finished, running ``evaluate`` again collects the results.

No scheduling of our own: the executor decides what runs where and when.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..errors import EgraffError
from ..files import atomic_path
from .evaldir import EvalDir


def run_one(spec_path: str) -> tuple[int, str]:
    """Run the spec saved at ``spec_path`` with this interpreter; (exit code, last stderr
    line)."""
    r = subprocess.run([sys.executable, "-m", "egraff_lmp.run", str(spec_path)],
                       capture_output=True, text=True)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return r.returncode, (lines[-1] if lines else "")


def run_all(specs: list[str], jobs: int = 1, dask_scheduler: str | None = None,
            done: Callable[[int, tuple[int, str]], None] | None = None) -> list:
    """Results of :func:`run_one` for every saved spec, in order; ``done(i, result)`` is
    called as each finishes (to report progress)."""
    argvs = [str(s) for s in specs]
    results: list = [None] * len(argvs)

    def finish(i, res):
        results[i] = res
        if done:
            done(i, res)

    if not argvs:
        return results
    if dask_scheduler:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise EgraffError("--dask-scheduler needs dask distributed: pip install "
                              "'egraff-lmp[dask]'") from None
        try:
            client = Client(dask_scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise EgraffError(f"cannot connect to the Dask scheduler at {dask_scheduler}: "
                              f"{exc}") from None
        with client:
            futures = client.map(run_one, argvs, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                finish(index[fut.key], fut.result())
        return results
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        futures = {ex.submit(run_one, a): i for i, a in enumerate(argvs)}
        for fut in as_completed(futures):
            finish(futures[fut], fut.result())
    return results


SLURM_TEMPLATE = """\
#!/bin/bash
# Written by egraff-lmp evaluate: one array element per simulation of {outdir}.
# Submit with:   sbatch {script}
# Then collect:  {collect}
#SBATCH --job-name=egraff-eval
#SBATCH --array=0-{last}
#SBATCH --ntasks={np}
#SBATCH --cpus-per-task=1
#SBATCH --output={logs}
set -euo pipefail
spec=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {tasks})
{python} -m egraff_lmp.run "$spec"
"""


class SlurmArray(NamedTuple):
    """A written job array: its script and how many array tasks (runs) it has."""

    script: Path
    tasks: int


def write_slurm(evaldir: EvalDir, spec_paths: list, np_: int, collect: str) -> SlurmArray:
    """Write ``slurm/tasks.txt`` (one saved run spec a line) and ``slurm/array.sbatch``."""
    shell_lines = [str(p) for p in spec_paths]
    evaldir.slurm.mkdir(parents=True, exist_ok=True)
    tasks, script = evaldir.slurm_tasks, evaldir.slurm_script
    with atomic_path(tasks) as tmp:
        tmp.write_text("".join(line + "\n" for line in shell_lines))
    with atomic_path(script) as tmp:
        tmp.write_text(SLURM_TEMPLATE.format(
            outdir=shlex.quote(str(evaldir.root)), script=shlex.quote(str(script)),
            collect=collect, last=max(0, len(shell_lines) - 1), np=np_,
            logs=shlex.quote(evaldir.slurm_logs), tasks=shlex.quote(str(tasks)),
            python=shlex.quote(sys.executable)))
    script.chmod(0o755)
    return SlurmArray(script, len(shell_lines))
