"""Train, deploy and measure the small MACE models of the study's tasks (issue 11).

    EGRAFF_LMP_DATA=/path/to/MDBENCHGNN/Datasets python inputs/models/reproduce_tasks.py \
        [--only TASK] [--workdir DIR]

The data are the study's own ``Datasets/`` folder (``egraff-lmp datasets`` says what is
present; ``egraff-lmp datasets fetch NAME`` downloads a dataset). Per task, frames of the
training split(s) are written as extxyz and trained with ``mace_run_train`` and
``configs/mace_task.yaml`` (16 channels, max_L 1, 2 interactions, r_max 5 Å, float32: the
study's models scaled down to minutes on 2 CPU cores), deployed with ``egraff-lmp deploy``
(parity and symmetry checked on test frames) into ``tasks/<task>-mace.egraff.pt``, and their
test-split errors computed by ``egraff-lmp predict`` + ``compare`` into ``tasks/metrics.json``
and the table of ``tasks/README.md``.

Tasks (what trains on what; the test split is never trained on):
- md17_<molecule> (ethanol, naphthalene, salicylic acid): 300 of the 950 shuffled train
  frames; test = the contiguous 1000-frame test trajectory.
- 3bpa: the 500 train frames (300 K); test = the 600 K split (out-of-distribution).
- acetylacetone: the 500 train frames (300 K); test = the 650-frame 300 K test set.
- lips20: every 10th of the 1000 frames of Li2S, beta-Li3PS4 and Li7P3S11 (300 frames);
  simulated on the unseen compositions gamma-Li3PS4, Li48P16S61 and Li2P2S6.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "tasks"
sys.path.insert(0, str(ROOT))

from egraff_lmp import datasets  # noqa: E402
from egraff_lmp.deploy.training_data import frames_as_atoms  # noqa: E402

# task -> (training sources [(dataset, split, frame indices)], epochs, test datasets)
TASKS = {
    **{f"md17_{m}": ([(f"md17_{m}", "train", range(0, 950, 3))], 100, [f"md17_{m}"])
       for m in ("ethanol", "naphthalene", "salicylic_acid")},
    "3bpa": ([("3bpa", "train", range(500))], 60, ["3bpa"]),
    "acetylacetone": ([("acetylacetone", "train", range(500))], 80, ["acetylacetone"]),
    "lips20": ([(f"lips20-{c}", "test", range(0, 1000, 10))
                for c in ("Li2S", "beta-Li3PS4", "Li7P3S11")], 30,
               [f"lips20-{c}" for c in ("gamma-Li3PS4", "Li48P16S61", "Li2P2S6")]),
}


def run(cmd, cwd):
    print("$", " ".join(map(str, cmd)), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True)
    return time.perf_counter() - t0


def train(task: str, work: Path) -> tuple[Path, float]:
    import ase.io

    from egraff_lmp.deploy.families.mace import load_pickled_model, save_mace_state

    sources, epochs, _ = TASKS[task]
    work.mkdir(parents=True, exist_ok=True)
    atoms = []
    for name, split, frames in sources:
        traj = datasets.read_split(datasets.get(name), split)
        atoms += list(frames_as_atoms(traj, [i for i in frames if i < traj.n_frames]))
    ase.io.write(work / "train.xyz", atoms, format="extxyz")
    seconds = run([sys.executable, "-m", "mace.cli.run_train", "--config",
                   HERE / "configs" / "mace_task.yaml", "--name", f"{task}-mace",
                   "--max_num_epochs", epochs], work)
    state = save_mace_state(load_pickled_model(work / f"{task}-mace.model"),
                            OUT / f"{task}-mace.mace-state.pt")
    return state, seconds


def evaluate(task: str, source: Path, work: Path, seconds: float) -> dict:
    egraff = [sys.executable, "-m", "egraff_lmp.cli"]
    artifact = OUT / f"{task}-mace.egraff.pt"
    tests = TASKS[task][2]
    first = datasets.split_files(datasets.get(tests[0]), "test")[0]
    run(egraff + ["deploy", source, "-o", artifact, "--data", first], ROOT)
    out = {"artifact": artifact.name, "train_seconds": seconds, "test": {}}
    for name in tests:
        test = datasets.split_files(datasets.get(name), "test")[0]
        pred = work / f"{name}-pred.npz"
        run(egraff + ["predict", artifact, test, "-o", pred], ROOT)
        run(egraff + ["compare", pred, "--ref", test, "--json", work / f"{name}.json"], ROOT)
        static = json.loads((work / f"{name}.json").read_text())
        out["test"][name] = {"frames": static["n_frames_compared"],
                             "e_mae_mev_per_atom": 1000 * static["e_mae_ev_per_atom"],
                             "f_mae_mev_per_a": 1000 * static["f_mae_ev_per_a"]}
    return out


def write_readme(results: dict):
    rows = ["| task | model | trained on | test set | frames | energy MAE (meV/atom) | "
            "force MAE (meV/Å) | training (s) |", "|---|---|---|---|---|---|---|---|"]
    for task, r in results.items():
        trained = ", ".join(f"{n} {s}[{f.start}:{f.stop}:{f.step}]"
                            for n, s, f in TASKS[task][0])
        for name, t in r["test"].items():
            rows.append(f"| {task} | `{r['artifact']}` | {trained} | {name} test | "
                        f"{t['frames']} | {t['e_mae_mev_per_atom']:.2f} | "
                        f"{t['f_mae_mev_per_a']:.1f} | {r['train_seconds']:.0f} |")
    readme = OUT / "README.md"
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    text = readme.read_text() if readme.exists() else f"{start}\n{end}\n"
    table = "\n".join([start] + rows + [end])
    readme.write_text(text[:text.index(start)] + table + text[text.index(end) + len(end):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(TASKS), action="append")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/egraff-train-tasks"))
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    metrics_file = OUT / "metrics.json"
    results = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    for task in TASKS:
        if args.only and task not in args.only:
            continue
        work = args.workdir / task
        shutil.rmtree(work, ignore_errors=True)
        source, seconds = train(task, work)
        results[task] = evaluate(task, source, work, seconds)
        metrics_file.write_text(json.dumps(results, indent=1) + "\n")
        write_readme(results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
