"""Compiled artifacts (AOTInductor packages): written only after parity with the
TorchScript artifact, any atom and edge count from one package, read by their content,
refused in one line where they cannot run."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import ROOT

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.cli import main as cli
from egraff_lmp.deploy import artifact, compiled
from egraff_lmp.errors import EgraffError

ALLEGRO = ROOT / "inputs/models/gete-allegro.egraff.pt"


def _gete(k=0):
    d = np.load(ROOT / "inputs/gete/gete_test.npz")
    return Atoms(numbers=d["atomic_numbers"], positions=d["pos"][k], cell=d["cell"], pbc=True)


def _max_df(a, b, atoms):
    atoms.calc = a
    f1, e1 = atoms.get_forces().copy(), atoms.get_potential_energy()
    atoms.calc = b
    f2, e2 = atoms.get_forces().copy(), atoms.get_potential_energy()
    return float(np.abs(f1 - f2).max()), abs(e1 - e2) / len(atoms)


def test_the_package_says_what_it_was_compiled_for_and_what_its_check_measured(
        compiled_allegro):
    meta = artifact.read_metadata(compiled_allegro)  # from the zip, nothing loaded
    c = meta["compiled"]
    assert c["torch_version"] == torch.__version__ and c["device_type"] == "cpu"
    assert c["artifact_sha256"] == artifact.sha256(ALLEGRO) and c["compile_s"] > 0
    assert meta["stages"] is None and meta["type_names"] == ["Ge", "Te"]
    assert meta["validation"]["compiled_parity"]["forces"] < 1e-4
    # the loader reads the same metadata (the package's own, rewritten after the check)
    loaded = torch._inductor.aoti_load_package(str(compiled_allegro)).get_metadata()
    assert json.loads(loaded["egraff_lmp.json"]) == meta


@pytest.mark.parametrize("case", ["other frame", "2x2x1 replica", "cluster", "one atom",
                                  "dimer", "triclinic"])
def test_one_package_runs_any_atom_and_edge_count_as_the_artifact_does(compiled_allegro,
                                                                       case):
    atoms = {"other frame": lambda: _gete(150),
             "2x2x1 replica": lambda: _gete(3).repeat((2, 2, 1)),
             "cluster": lambda: Atoms("GeTe4", positions=[[0, 0, 0], [2.7, 0, 0],
                                                          [0, 2.7, 0], [0, 0, 2.7],
                                                          [-2.7, 0, 0]]),
             "one atom": lambda: Atoms("Te", positions=[[1, 2, 3]]),
             "dimer": lambda: Atoms("GeTe", positions=[[0, 0, 0], [0, 0, 2.8]]),
             "triclinic": lambda: _triclinic()}[case]()
    df, de = _max_df(DeployedCalculator(compiled_allegro), DeployedCalculator(ALLEGRO), atoms)
    assert df < 1e-4 and de < 1e-6, (df, de)
    if all(atoms.pbc):
        atoms.calc = DeployedCalculator(compiled_allegro)
        s1 = atoms.get_stress()
        atoms.calc = DeployedCalculator(ALLEGRO)
        np.testing.assert_allclose(s1, atoms.get_stress(), atol=1e-6)


def _triclinic():
    a = _gete(7)
    cell = a.cell[:].copy()
    cell[1, 0] += 3.0
    a.set_cell(cell, scale_atoms=True)
    return a


def test_the_padding_adds_no_energy_and_no_atom_sees_it():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=torch.float64)
    types = torch.tensor([1, 0])
    ei = torch.tensor([[0, 1], [1, 0]])
    sh = torch.zeros((2, 3), dtype=torch.float64)
    p, t, e, s = compiled.pad(pos, types, ei, sh, r_max=5.0)
    assert p.shape == (4, 3) and t.tolist() == [1, 0, 0, 0]
    assert e[:, 2:].tolist() == [[2, 3], [3, 2]]  # dummies joined only to each other
    vec = p[e[1]] - p[e[0]] + s
    assert torch.allclose(vec[2:].norm(dim=1), torch.tensor([2.5, 2.5], dtype=torch.float64))


class _FixesN(torch.nn.Module):
    def forward(self, pos, types, edge_index, shift):
        n = pos.shape[0]
        return (shift.norm(dim=1).sum() + pos.sum(1) * 0) + torch.tensor([float(n)])


def test_a_model_that_fixes_its_atom_count_is_refused_before_export():
    module = compiled.Unfolded(_FixesN(), torch.float64)

    def inputs(n):
        pos = torch.rand((n, 3), dtype=torch.float64)
        ei = torch.stack([torch.arange(n), torch.arange(n).roll(1)])
        return (pos, torch.zeros(n, dtype=torch.long), ei, torch.zeros((n, 3),
                dtype=torch.float64), torch.tensor(n))

    with compiled.traceable(), pytest.raises(EgraffError, match=r"fixes the atom or edge "
                                                                 r"count.*first at aten\."):
        compiled.unfold(module, inputs(7), inputs(5), "toy.egraff.pt")


def test_the_shipped_painn_compiles_and_equals_its_artifact(tmp_path):
    """SchNetPack's scripted ``scatter_add`` fixed the atom count into the graph; the
    family's own sums keep it a size (and give the TorchScript artifact's values)."""
    art = ROOT / "inputs/models/gete-painn.egraff.pt"
    pkg = compiled.compile_artifact(art, output=tmp_path / "painn.egraff.pt2",
                                    data=ROOT / "inputs/gete/gete_test.npz")
    df, de = _max_df(DeployedCalculator(art), DeployedCalculator(pkg), _gete(1)[:150])
    assert df < 1e-4 and de < 1e-5


def _with_meta(package, tmp_path, change):
    meta = artifact.read_metadata(package)
    change(meta)
    out = tmp_path / "changed.egraff.pt2"
    compiled._write_with_metadata(package, meta, out)
    return out


def test_a_package_of_another_torch_or_device_or_cpu_is_refused_in_one_line(
        compiled_allegro, tmp_path):
    other = _with_meta(compiled_allegro, tmp_path,
                       lambda m: m["compiled"].update(torch_version="2.99.0"))
    with pytest.raises(EgraffError, match="compiled with torch 2.99.0"):
        DeployedCalculator(other)
    with pytest.raises(EgraffError, match="compiled for cpu, asked to run on cuda"):
        artifact.load(compiled_allegro, "cuda")
    if compiled.cpu_capability() != "AVX512":
        weaker = _with_meta(compiled_allegro, tmp_path,
                            lambda m: m["compiled"].update(cpu_flags="AVX512"))
        with pytest.raises(EgraffError, match="compiled for a CPU with AVX512"):
            DeployedCalculator(weaker)


def test_a_truncated_package_is_one_line_and_exit_2(compiled_allegro, tmp_path, capsys):
    bad = tmp_path / "bad.egraff.pt2"
    data = compiled_allegro.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert cli(["deploy", "--info", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.egraff.pt2" in err[0], err


def test_compile_refuses_a_package_and_a_source_that_is_not_the_artifacts(compiled_allegro,
                                                                          tmp_path):
    with pytest.raises(EgraffError, match="already a compiled package"):
        compiled.compile_artifact(compiled_allegro)
    with pytest.raises(EgraffError, match="sha256 differs"):
        compiled.compile_artifact(ALLEGRO, ROOT / "inputs/models/gete-nequip.nequip.zip")


def test_a_package_is_a_zip_of_aotinductor_code_not_a_torchscript_archive(compiled_allegro):
    assert compiled.is_package(compiled_allegro) and not compiled.is_package(ALLEGRO)
    with zipfile.ZipFile(compiled_allegro) as z:
        assert not any(n.endswith("/extra/egraff_lmp.json") for n in z.namelist())


def test_concurrent_first_uses_compile_once_into_the_cache(tmp_path):
    """Two processes ask for the package of one artifact on an empty cache: one compiles,
    the other waits for it and gets the same file."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "EGRAFF_LMP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    code = ("import sys; from egraff_lmp.deploy.compiled import cached; "
            f"print(cached(sys.argv[1], data={str(ROOT / 'inputs/gete/gete_test.npz')!r}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ALLEGRO)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    log = (tmp_path / "cache" / "compiled" / "compiles.log").read_text().splitlines()
    assert len(log) == 1, log  # one compile
    assert DeployedCalculator(paths.pop()).artifact.metadata["compiled"]


def test_evaluate_with_protocol_compiled_runs_the_cached_package(compiled_allegro, tmp_path,
                                                                 monkeypatch, capsys):
    """``protocol: {compiled: true}``: the artifact's package from the cache (here put
    there beforehand: no compile) runs every simulation and the static errors."""
    import shutil

    import yaml

    from egraff_lmp.evaluate.records import Evaluation
    from egraff_lmp.run.record import RunRecord

    monkeypatch.setenv("EGRAFF_LMP_CACHE", str(tmp_path / "cache"))
    entry = tmp_path / "cache" / "compiled" / compiled.cache_key(ALLEGRO)
    entry.mkdir(parents=True)
    shutil.copy(compiled_allegro, entry / "gete-allegro.egraff.pt2")
    cfg = {"models": {"allegro": {"artifact": str(ALLEGRO)}}, "datasets": ["gete"],
           "protocol": {"runs": 1, "steps": 5, "static_frames": 3, "compiled": True,
                        "engine": "callback"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    code = cli(["evaluate", str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "runs compiled as" in out + err and not (entry.parent / "compiles.log").exists()
    x = Evaluation.load(tmp_path / "out" / "metrics.json").cell("allegro", "gete")
    assert x.stable_runs == 1 and x.static.f_mae_mev_per_a > 0
    (run,) = (tmp_path / "out" / "runs").rglob("run.json")
    assert RunRecord.load(run.parent).spec.variables["model"].endswith(".egraff.pt2")


class _InPlaceLayer(torch.nn.Module):
    """A stage layer that sums its messages in place into a buffer read through a view
    taken before the sum (what NequIP's layers do with ``scatter_add_`` and ``copy_``)."""

    def forward(self, zero, types, edge_index, shift, x, h):
        i, j = edge_index
        r = (zero[j] - zero[i] + shift).norm(dim=1, keepdim=True)
        out = torch.zeros((h.shape[0], h.shape[1] + 1), dtype=h.dtype)
        view = out[:, : h.shape[1]]
        out.index_add_(0, i, torch.cat([x[j] * r, r], 1))
        h_next = h + torch.tanh(view)
        return h_next, h_next, h_next.sum(1).to(torch.float64)


def test_a_stage_layer_summing_in_place_keeps_its_sums_when_cut():
    """The joint graph is functionalized before the cut into forward and backward: a cut
    by data dependencies alone loses an in-place update read through a view."""
    from egraff_lmp.deploy import compiled_stages
    from egraff_lmp.deploy.compiled import _make_fx

    torch.manual_seed(0)
    n, ghosts, width = 5, 3, 4
    pos = torch.rand((n + ghosts, 3), dtype=torch.float64) * 3
    centres = torch.arange(n)
    edges = torch.stack([centres.repeat(2), torch.cat([(centres + 1) % n, centres + ghosts])])
    primals = [pos, torch.zeros(n + ghosts, dtype=torch.long), edges,
               torch.zeros((2 * n, 3), dtype=torch.float64),
               torch.rand((n + ghosts, width), dtype=torch.float64),
               torch.rand((n, width), dtype=torch.float64)]
    tangents = [torch.rand((n, width), dtype=torch.float64) for _ in range(2)]
    joint_fn = compiled_stages.joint_layer(_InPlaceLayer(), torch.float64, False, False)
    expected = joint_fn(primals, tangents)
    joint = compiled_stages._functional(_make_fx(joint_fn, (primals, tangents)), primals,
                                        tangents)
    fw, bw, _ = compiled_stages.partition(joint, 3)
    out = fw(*primals)
    grads = bw(*primals, *out[3:], *tangents)
    for got, want in zip(list(out[:3]) + list(grads), expected):
        assert torch.allclose(got, want, atol=1e-12)


def test_compile_jobs_follow_the_cpus_and_the_environment(monkeypatch):
    """A package's programs compile in processes of their own, as many at once as this
    process has CPUs, or EGRAFF_LMP_COMPILE_JOBS; a bad value is one clear error."""
    import os

    monkeypatch.delenv("EGRAFF_LMP_COMPILE_JOBS", raising=False)
    assert compiled.compile_jobs() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("EGRAFF_LMP_COMPILE_JOBS", "1")
    assert compiled.compile_jobs() == 1
    monkeypatch.setenv("EGRAFF_LMP_COMPILE_JOBS", "two")
    with pytest.raises(EgraffError, match="EGRAFF_LMP_COMPILE_JOBS=two: not a number"):
        compiled.compile_jobs()
