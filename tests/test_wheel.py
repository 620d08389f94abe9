"""The package as users install it: a wheel, installed non-editable into a fresh virtual
environment, used from a directory outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from conftest import ROOT

from egraff_lmp.run.record import RECORD_FORMAT, RECORD_VERSION


def _sh(cmd, cwd, env):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout


def test_wheel_carries_the_plugin_and_examples_and_runs_them_from_site_packages(tmp_path):
    wheels = tmp_path / "wheels"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _sh([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation",
         "-q", "-w", wheels], tmp_path, env)
    (wheel,) = wheels.glob("egraff_lmp-*.whl")
    assert wheel.stat().st_size < 20e6
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("egraff_lmp/_plugin/pair_egraff.cpp", "egraff_lmp/_plugin/CMakeLists.txt",
                 "egraff_lmp/_examples/gete.in", "egraff_lmp/_examples/gete/gete_start.data",
                 "egraff_lmp/_examples/models/gete-mace.egraff.pt",
                 "egraff_lmp/lammps/plugin.py", "egraff_lmp/commands/datasets.py",
                 "egraff_lmp/data/mdbenchgnn-e4ee1e9.json",
                 "egraff_lmp/_examples/evaluate-tasks.yaml"):
        assert name in names, name

    # a fresh environment: egraff-lmp from the wheel, the heavy dependencies from the
    # environment running this test — a virtual environment or the system's Python alike
    # (``venv --system-site-packages`` would inherit the *base* interpreter's packages, not
    # those of a venv this test runs in)
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", venv], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = _sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  tmp_path, env).strip()
    here = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(purelib, "_test_parent_env.pth").write_text("\n".join(here) + "\n")
    _sh([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env["EGRAFF_LMP_CACHE"] = str(tmp_path / "cache")  # the plugin is built anew here
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = json.loads(_sh([py, "-c", "import json, egraff_lmp; "
                            "from egraff_lmp.resources import plugin_sources, examples_dir; "
                            "print(json.dumps([egraff_lmp.__file__, str(plugin_sources()), "
                            "str(examples_dir())]))"], work, env))
    site = _sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work,
               env).strip()
    for path in where:
        assert path.startswith(site), (path, site)
    plugin = _sh([venv / "bin" / "egraff-lmp", "build-plugin"], work, env).strip()
    assert plugin.startswith(str(tmp_path / "cache")) and os.path.exists(plugin)

    # the registry finds the GeTe files the wheel ships; fetch's pin is installed
    listing = _sh([venv / "bin" / "egraff-lmp", "datasets"], work, {**env, "HOME": str(work)})
    gete = next(line for line in listing.splitlines() if line.startswith("gete "))
    assert gete.endswith("-train +val +test +test-val"), gete

    # the GeTe example straight from site-packages, with the plugin engine
    gete = os.path.join(where[2], "gete.in")
    out = _sh([venv / "bin" / "egraff-lmp", "run", gete, "-o", work / "run", "--var",
               "steps=3", "--engine", "plugin", "--no-progress"], work, env)
    assert "with the plugin engine" in out
    rec = json.loads((work / "run" / "run.json").read_text())
    assert rec["status"] == "ok" and rec["steps_done"] == 3 and rec["spec"]["input"] == gete
    assert (rec["format"], rec["version"]) == (RECORD_FORMAT, RECORD_VERSION)
    assert rec["artifact"].startswith(site) and rec["pair_mode"] == "images"
    assert (work / "run" / "metrics.json").exists()  # compared with the shipped reference

    # and copied out, as a user would to edit them
    _sh([venv / "bin" / "egraff-lmp", "examples", work / "ex"], work, env)
    assert (work / "ex" / "gete.in").exists() and (work / "ex" / "models").is_dir()
    assert not list((work / "ex").rglob("__init__.py"))
