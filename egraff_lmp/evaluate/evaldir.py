"""The evaluation directory (``-o REPORTDIR``): every path in it is spelled here, once.

::

    evaluation.json                 which config, its fingerprint (refuses another evaluation)
    inputs/LABEL.in, LABEL-nve.in   the LAMMPS inputs of each dataset
    starts/LABEL/starts.json        the DatasetPlan; start-K.data: the start states
    specs/MODEL/LABEL/RUN.json      each run's RunSpec (what the executors run)
    runs/MODEL/LABEL/RUN/           each an ``egraff-lmp run`` directory, + evaluation.json
                                    (the run's RunMetrics)
    static/MODEL/LABEL.json, .npz   static errors and the predictions they come from
    reference/LABEL.json            the ReferenceAnalysis of each dataset
    slurm/tasks.txt, array.sbatch   with --slurm; slurm/%A_%a.out: the array's logs
    report.md, report.html, metrics.json, metrics.csv, plots/NAME.png
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import located
from ..files import write_json

RUN_METRICS = "evaluation.json"  #: a run directory's RunMetrics cache


class EvalDir:
    """The paths of one evaluation directory (``root``, resolved)."""

    def __init__(self, root):
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"EvalDir({str(self.root)!r})"

    # -- what the evaluation is --------------------------------------------------------------
    @property
    def mark(self) -> Path:
        return self.root / "evaluation.json"

    def claim(self, fingerprint: str, config: str, title: str, protocol: dict) -> None:
        """Take the directory for the evaluation with ``fingerprint``: refuse one that holds
        another evaluation, or anything else."""
        if self.mark.exists():
            try:
                old = json.loads(self.mark.read_text())
            except json.JSONDecodeError:
                raise located(self.mark, "is not an evaluation record") from None
            if old.get("fingerprint") != fingerprint:
                raise located(self.root, f"holds another evaluation (of {old.get('config')}, "
                                         f"fingerprint {old.get('fingerprint')}; this one is "
                                         f"{fingerprint}): give another -o")
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise located(self.root, "exists and is not an evaluation directory: give "
                                     "another -o")
        write_json(self.mark, {"config": config, "fingerprint": fingerprint, "title": title,
                               "protocol": protocol})

    # -- per dataset ------------------------------------------------------------------------
    def input(self, label: str, nve: bool = False) -> Path:
        """The NVT input of a dataset, or its NVE (energy drift) one."""
        return self.root / "inputs" / (f"{label}-nve.in" if nve else f"{label}.in")

    def plan(self, label: str) -> Path:
        return self.root / "starts" / label / "starts.json"

    def start_data(self, label: str, k: int) -> Path:
        return self.root / "starts" / label / f"start-{k}.data"

    def reference(self, label: str) -> Path:
        return self.root / "reference" / f"{label}.json"

    # -- per model × dataset ----------------------------------------------------------------
    def spec(self, model: str, label: str, run: str) -> Path:
        return self.root / "specs" / model / label / f"{run}.json"

    def rundir(self, model: str, label: str, run: str) -> Path:
        return self.root / "runs" / model / label / run

    @staticmethod
    def run_metrics(rundir) -> Path:
        return Path(rundir) / RUN_METRICS

    def static(self, model: str, label: str) -> Path:
        return self.root / "static" / model / f"{label}.json"

    def static_predictions(self, model: str, label: str) -> Path:
        return self.static(model, label).with_suffix(".npz")

    # -- executors --------------------------------------------------------------------------
    @property
    def slurm(self) -> Path:
        return self.root / "slurm"

    @property
    def slurm_tasks(self) -> Path:
        return self.slurm / "tasks.txt"

    @property
    def slurm_script(self) -> Path:
        return self.slurm / "array.sbatch"

    @property
    def slurm_logs(self) -> str:
        """The array's ``--output`` pattern (job id, array index)."""
        return f"{self.slurm}/%A_%a.out"

    # -- the report -------------------------------------------------------------------------
    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    def plot(self, name: str) -> Path:
        return self.root / "plots" / f"{name}.png"
