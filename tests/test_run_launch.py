"""The run package's structure and what every engine shares: no import circle, one
launcher, progress that suits where it is written, the ASE engine's protocol."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from egraff_lmp.cli import main
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.run.progress import Progress
from egraff_lmp.trajectory import minimum_image

RUN = ROOT / "egraff_lmp" / "run"
PACKAGE = "egraff_lmp.run"


def _run_imports(path: Path) -> set[str]:
    """The modules of egraff_lmp.run that ``path`` imports, anywhere in it (inside functions
    too: a lazy import closes a circle as well). ``from . import NAME`` of a name that is no
    module of the package is an import of the package itself (its __init__)."""
    modules = {p.stem for p in RUN.glob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(PACKAGE.split(".")[:len(PACKAGE.split(".")) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == PACKAGE:
                out |= {a.name if a.name in modules else "__init__" for a in node.names}
            elif target.startswith(PACKAGE + "."):
                out.add(target[len(PACKAGE) + 1:].split(".")[0])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PACKAGE:
                    out.add("__init__")
                elif a.name.startswith(PACKAGE + "."):
                    out.add(a.name[len(PACKAGE) + 1:].split(".")[0])
    out.discard(path.stem)
    return out


def import_graph() -> dict[str, set[str]]:
    return {p.stem: _run_imports(p) for p in sorted(RUN.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` (module → modules it imports) as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"engines": {"input"}, "driver": {"engines"},
                       "input": {"driver"}}) == ["driver", "engines", "input", "driver"]


def test_the_run_package_has_no_import_circle():
    graph = import_graph()
    assert {"driver", "engines", "ase_engine", "record"} <= set(graph)
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"
    # engines translate, the launcher runs: neither the engines nor the driver import it
    assert "launch" not in graph["engines"] | graph["driver"] | graph["ase_engine"]
    assert "driver" not in graph["engines"] and "engines" not in graph["driver"]


def test_every_module_of_the_run_package_imports_alone():
    """In a fresh interpreter each, so that no module works only after another."""
    procs = {name: subprocess.Popen([sys.executable, "-c", f"import {PACKAGE}.{name}"
                                     if name != "__init__" else f"import {PACKAGE}"],
                                    stderr=subprocess.PIPE, text=True)
             for name in import_graph()}
    failed = {name: p.communicate()[1].strip().splitlines()[-1:] for name, p in procs.items()}
    assert not {n: e for n, e in failed.items() if procs[n].returncode}, failed


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_without_a_terminal_is_a_plain_line_every_10_percent():
    out = _Stream(tty=False)
    bar = Progress("plugin engine", stream=out)
    bar.add(1000)
    for _ in range(100):
        bar.update(10, 0.352)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 10
    assert lines[4] == "plugin engine: 500/1000 steps (50 %), 35.2 ms/step"
    assert lines[-1].startswith("plugin engine: 1000/1000 steps (100 %)")
    # a second run command adds its steps: the next 10 % of the new total from there
    bar.add(1000)
    bar.update(100, 1.0)
    assert len(out.getvalue().splitlines()) == 10
    bar.update(100, 1.0)
    assert out.getvalue().splitlines()[-1].startswith("plugin engine: 1200/2000 steps (60 %)")


def test_progress_on_a_terminal_is_tqdms_bar():
    out = _Stream(tty=True)
    bar = Progress("plugin engine", stream=out)
    bar.add(20)
    bar.update(10, 0.1)
    bar.update(10, 0.1)
    bar.close()
    assert "\r" in out.getvalue() and "20/20" in out.getvalue()


ARGON = """
units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style egraff none
pair_coeff * * Ar
timestep 0.002
fix 1 all nve
thermo_style custom step temp pe ke etotal press
thermo_modify format float %.15g
thermo 5
dump d all custom 5 ${{rundir}}/dump.lammpstrj id type element x y z fx fy fz
dump_modify d sort id format float %.10g
{runs}
"""


@pytest.fixture
def argon(tmp_path):
    """256 argon atoms near 300 K in a LAMMPS data file with their velocities, and a writer
    of inputs that run them with ASE's Lennard-Jones (``--calculator``)."""
    from ase.build import bulk
    from ase.io import write

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4)
    atoms.rattle(0.05, seed=7)
    v = np.random.default_rng(3).normal(scale=0.025, size=(len(atoms), 3))  # ~300 K
    atoms.set_velocities(v - v.mean(axis=0))
    data = tmp_path / "argon.data"
    write(data, atoms, format="lammps-data", masses=True, velocities=True, units="metal",
          atom_style="atomic", specorder=["Ar"])

    def make(runs="run 20", name="argon.in"):
        inp = tmp_path / name
        inp.write_text(ARGON.format(data=data, runs=runs))
        return inp

    return make


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"),
                                                      env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("engine", ["callback", "ase"])
def test_progress_written_to_a_pipe_is_plain_lines(engine, argon, tmp_path):
    """`egraff-lmp run ... 2>&1 | tee log` (CI, Slurm): no carriage-return frames in the
    log, a line every 10 % instead."""
    r = subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "run", str(argon()), "-o",
                        str(tmp_path / "r"), "--engine", engine, "--calculator",
                        "calculators:argon_lj", "--check-every", "2"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
    assert r.returncode == 0, r.stdout.decode()[-2000:]
    assert b"\r" not in r.stdout
    lines = re.findall(rf"^{engine} engine: (\d+)/20 steps \((\d+) %\), \d+\.\d ms/step$",
                       r.stdout.decode(), re.M)
    assert [int(done) for done, _ in lines] == list(range(2, 21, 2)), r.stdout.decode()
    assert lines[-1][1] == "100"


def _stderr_of(argv, terminal: bool) -> bytes:
    """stderr and stdout of ``egraff-lmp ARGV`` written to a pipe, or to a terminal (a
    pseudo-terminal)."""
    cmd = [sys.executable, "-m", "egraff_lmp.cli", *map(str, argv)]
    if not terminal:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())
        assert r.returncode == 0, r.stdout.decode()[-2000:]
        return r.stdout
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=slave, stderr=slave, env=_env())
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait() == 0, out.decode()[-2000:]
    return out


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_of_ranks_under_mpiexec_follows_the_terminal_behind_them(
        terminal, plugin, tmp_path):
    """Rank 0's stderr is always a pipe of mpiexec's: the bar or the plain lines follow what
    egraff-lmp itself writes to."""
    from lj_artifact import argon_input, lj_artifact

    inp = tmp_path / "argon.in"
    inp.write_text(argon_input(f"pair_style egraff {lj_artifact(tmp_path)}\n"
                               "pair_coeff * * Ar"))
    out = _stderr_of(["run", inp, "-o", tmp_path / "r", "--np", 2, "--engine", "plugin",
                      "--check-every", 5], terminal)
    lines = re.findall(rb"^plugin engine: \d+/20 steps \(\d+ %\)", out, re.M)
    assert b"RuntimeWarning" not in out, out.decode()  # runpy: a rank's module run fresh
    if terminal:
        assert b"\rplugin engine" in out and b"20/20" in out and not lines
    else:
        assert b"\r" not in out and len(lines) == 4, out.decode()


def test_ase_engine_reads_the_input_once_into_a_protocol(argon, tmp_path):
    from egraff_lmp.run.ase_engine import AseEngine, AseProtocol, Thermostat

    engine = AseEngine("calculators:argon_lj")
    proto = engine.protocol(argon("run 10\nrun 10"), tmp_path / "r", {})
    assert isinstance(proto, AseProtocol) and len(proto.structure) == 256
    assert proto.timestep_fs == pytest.approx(2.0) and proto.thermostat == Thermostat("nve")
    assert proto.thermo.every == 5 and proto.runs == [10, 10]
    assert [(d.id, d.every, d.path) for d in proto.dumps] == [
        ("d", 5, tmp_path / "r" / "dump.lammpstrj")]
    assert engine.symbols == ["Ar"] and proto.structure.get_velocities().std() > 0
    assert not (tmp_path / "r").exists()  # reading writes nothing


def test_ase_engine_runs_several_runs_as_lammps_does(argon, tmp_path, capsys):
    """Two runs of 10 steps give the dump of one of 20 (no frame written twice) in the ASE
    engine, and the callback engine (LAMMPS) agrees."""
    dumps, thermo = {}, {}
    for engine, runs in (("ase", "run 20"), ("ase", "run 10\nrun 10"),
                         ("callback", "run 10\nrun 10")):
        key = f"{engine}-{runs.count('run')}"
        rundir = tmp_path / key
        code = main(["run", str(argon(runs, f"{key}.in")), "-o", str(rundir), "--engine",
                     engine, "--calculator", "calculators:argon_lj", "--no-progress"])
        assert code == 0, capsys.readouterr().err
        dumps[key] = read_trajectory(rundir / "dump.lammpstrj", types=["Ar"])
        thermo[key] = [(s, e) for r in read_thermo(rundir / "log.lammps")
                       for s, e in zip(r["Step"], r["TotEng"])]
        rec = json.loads((rundir / "run.json").read_text())
        assert rec["steps_done"] == 20 and len(rec["runs"]) == runs.count("run")
        assert all(r["setup_ms"] > 0 for r in rec["runs"])
    one, two, lmp = dumps["ase-1"], dumps["ase-2"], dumps["callback-2"]
    assert [f.step for f in two] == [f.step for f in one] == [f.step for f in lmp] == [
        0, 5, 10, 15, 20]
    for a, b, c in zip(one, two, lmp):
        np.testing.assert_array_equal(b.positions, a.positions)
        moved = minimum_image(c.positions - a.positions, a.cell)  # LAMMPS wraps, ASE not
        np.testing.assert_allclose(moved, 0, atol=1e-5)
    # LAMMPS' thermo: a row at each run's first and last step (the driver's chunks of
    # LAMMPS runs repeat some, with the same values)
    assert [s for s, _ in thermo["ase-2"]] == [0, 5, 10, 10, 15, 20]
    assert [s for s, _ in thermo["ase-1"]] == [0, 5, 10, 15, 20]
    by_step = dict(thermo["callback-2"])
    assert sorted(by_step) == [0, 5, 10, 15, 20]
    for s, e in thermo["ase-2"]:
        assert e == pytest.approx(by_step[s], abs=1e-6)  # ASE's and LAMMPS' constants


def test_ase_engine_refuses_to_change_the_protocol_after_a_run(argon, tmp_path, capsys):
    inp = argon("run 10\ntimestep 0.001\nrun 10")
    code = main(["run", str(inp), "-o", str(tmp_path / "r"), "--engine", "ase",
                 "--calculator", "calculators:argon_lj", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "line 16: 'timestep' after a run" in err and "plugin or callback" in err
