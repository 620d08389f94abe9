"""The plugin's graph building alone (deploy/plugin/egraff_graph.*: edges within r_max, ghosts
folded onto their owners, spatial chunks; pure functions on plain arrays, no LAMMPS, no
torch): its C++ test executable (egraff_graph_test.cpp, the CMake target egraff_graph_test
that the plugin's build leaves out) is built and run here."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from egraff_lmp.resources import plugin_sources


@pytest.mark.skipif(not shutil.which("cmake") or not (os.environ.get("CXX") or shutil.which("c++")
                                                       or shutil.which("g++")),
                    reason="needs cmake and a C++ compiler")
def test_graph_building_passes_its_own_checks(tmp_path):
    build = tmp_path / "build"
    steps = [["cmake", "-S", str(plugin_sources()), "-B", str(build), "-DEGRAFF_GRAPH_TEST_ONLY=ON",
              "-DCMAKE_BUILD_TYPE=Release"],
             ["cmake", "--build", str(build), "--target", "egraff_graph_test"]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    r = subprocess.run([str(build / "egraff_graph_test")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("egraff_graph_test:") and last.endswith(", 0 failed"), last
    checks = int(last.split()[1])
    assert checks > 1000, last  # the chunk checks ran (one per edge and atom)
