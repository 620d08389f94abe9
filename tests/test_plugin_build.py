"""Building the LAMMPS plugin on first use: concurrent first uses build it once."""

from __future__ import annotations

import os
import subprocess
import sys

BUILD = "from egraff_lmp.lammps.plugin import plugin_path; print(plugin_path())"


def test_two_processes_on_an_empty_cache_build_the_plugin_once(tmp_path):
    env = {**os.environ, "EGRAFF_LMP_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    (plugin,) = paths
    assert os.path.getsize(plugin) > 0
    entry = os.path.dirname(plugin)
    builds = open(os.path.join(entry, "builds.log")).read().splitlines()
    assert len(builds) == 1, builds  # the second process waited and found it built
    # nothing half-built is left beside the library
    assert sorted(n for n in os.listdir(entry) if not n.startswith(".")) == [
        "builds.log", os.path.basename(plugin)]
