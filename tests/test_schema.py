"""The staged contract written once: egraff_lmp/deploy/schema.py holds the metadata keys, the
staged methods and the plugin's modes; the plugin knows them only through the header generated
from it (deploy/plugin/egraff_schema.h), and the artifact writer and the run engine use the
same constants."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from conftest import ROOT

from egraff_lmp.deploy import schema
from egraff_lmp.resources import plugin_sources

PLUGIN = ROOT / "deploy" / "plugin"
SOURCES = sorted(p for p in PLUGIN.iterdir() if p.suffix in (".cpp", ".h")
                 and p.name != schema.HEADER)


def _code(text: str) -> str:
    """C++ source without its comments (string literals kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif text[i] in "\"'":
            q, j = text[i], i + 1
            while text[j] != q:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _literals(code: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', code)]


def test_the_committed_header_is_the_one_the_schema_generates():
    header = PLUGIN / schema.HEADER
    assert header.read_text(encoding="utf-8") == schema.cpp_header(), (
        f"{header} is out of date: run python -c 'from egraff_lmp.deploy import schema; "
        "schema.write_header()'")
    assert schema.header_path() == plugin_sources() / schema.HEADER
    r = subprocess.run([sys.executable, "-c", "import sys; from egraff_lmp.deploy import "
                        "schema; sys.exit(schema.main(['--check']))"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr


def test_check_fails_on_a_stale_header_and_write_repairs_it(tmp_path):
    stale = tmp_path / schema.HEADER
    stale.write_text(schema.cpp_header().replace('"r_max"', '"rmax"'))
    assert schema.main([str(stale), "--check"]) == 1
    schema.write_header(stale)
    assert schema.main([str(stale), "--check"]) == 0


def test_the_header_spells_every_plugin_key_method_and_mode():
    code = _code(schema.cpp_header())
    for key in schema.PLUGIN_KEYS:
        assert f'constexpr const char *{key.cpp} = "{key.name}";' in code
    for name, value in (("META_FILE", schema.META_FILE), ("EXTRACT_MODE", schema.EXTRACT_MODE),
                        ("METHOD_STAGE_EMBED", schema.METHOD_STAGE_EMBED),
                        ("METHOD_STAGE_LAYER", schema.METHOD_STAGE_LAYER),
                        ("DTYPE_DEFAULT", schema.DTYPE_DEFAULT)):
        assert f'constexpr const char *{name} = "{value}";' in code
    assert f"constexpr int CALLING_CONVENTION = {schema.CALLING_CONVENTION};" in code
    for mode in schema.MODES:
        assert f"  {mode.cpp} = {mode.code}," in code
    names = ", ".join(f'"{n}"' for n in schema.MODE_NAMES)
    assert f"MODE_NAMES[NUM_MODES] = {{{names}}};" in code
    # every key has a unique name and C++ constant; the keys' constants are the module's
    assert len({k.name for k in schema.KEYS if k.parent is None}) == len(
        [k for k in schema.KEYS if k.parent is None])
    assert len({k.cpp for k in schema.KEYS}) == len(schema.KEYS)
    for key in schema.KEYS:
        assert getattr(schema, key.cpp) == key.name


def test_the_plugin_sources_spell_no_key_method_or_mode_of_their_own():
    """Every metadata key, staged method, mode name and the metadata file's name reach the
    C++ through egraff_schema.h only: no string literal of the plugin (comments aside) is
    one of them, and metadata is never indexed by a literal."""
    assert SOURCES, PLUGIN
    contract = ({k.name for k in schema.KEYS} | set(schema.MODE_NAMES)
                | {schema.META_FILE, schema.EXTRACT_MODE, schema.METHOD_STAGE_EMBED,
                   schema.METHOD_STAGE_LAYER, schema.DTYPE_FLOAT32, schema.DTYPE_FLOAT64})
    found = []
    for src in SOURCES:
        code = _code(src.read_text(encoding="utf-8"))
        found += [f"{src.name}: \"{s}\"" for s in _literals(code) if s in contract]
        found += [f"{src.name}: {m.group(0)}" for m in
                  re.finditer(r'meta\w*\s*(\.\s*(at|value|contains)\s*\(|\[)\s*"', code)]
        found += [f"{src.name}: {m.group(0)}" for m in
                  re.finditer(r'(find_method|get_method)\s*\(\s*"', code)]
    assert not found, "spelled outside egraff_schema.h: " + "; ".join(found)
    # the sources do use the header (a check that the scan above reads the right files)
    text = "".join(src.read_text(encoding="utf-8") for src in SOURCES)
    for name in ("KEY_R_MAX", "KEY_STAGES", "STAGES_FEATURE_WIDTHS", "META_FILE",
                 "METHOD_STAGE_LAYER", "EXTRACT_MODE", "MODE_NAMES", "MODE_STAGED"):
        assert name in text, name


def test_the_scan_sees_a_literal_key():
    code = _code('// "r_max" in a comment\nauto r = meta.at("r_max"); /* "dtype" */')
    assert _literals(code) == ["r_max"]


def test_mode_names_and_codes():
    assert schema.MODE_NAMES == ("auto", "images", "ghosts", "staged")
    for code, name in enumerate(schema.MODE_NAMES):
        assert schema.mode_code(name) == code
        assert schema.mode_name(code) == name
        assert schema.mode_name(float(code)) == name  # lmp.extract_pair gives a float
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match="no pair_style egraff mode"):
            schema.mode_name(bad)
    with pytest.raises(ValueError, match="unknown pair_style egraff mode 'fast'"):
        schema.mode_code("fast")


def test_the_run_engine_and_the_run_command_know_the_schemas_modes():
    from egraff_lmp.commands import run
    from egraff_lmp.run import engines

    assert tuple(engines.PAIR_MODES) == schema.MODE_NAMES  # indexed by the plugin's code
    parser = argparse.ArgumentParser()
    run.add_parser(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    (action,) = [a for a in sub.choices["run"]._actions if "--pair-mode" in a.option_strings]
    assert tuple(action.choices) == schema.MODE_NAMES


def test_the_artifact_writer_writes_the_schemas_keys(tmp_path):
    from types import SimpleNamespace

    import torch

    from egraff_lmp.deploy import artifact, model

    assert model.CALLING_CONVENTION == schema.CALLING_CONVENTION
    assert artifact.META_NAME == schema.META_FILE and artifact.FORMAT == schema.FORMAT
    src = tmp_path / "model.pt"
    src.write_bytes(b"trained")
    source = SimpleNamespace(family="mace", type_names=["Ge", "Te"], r_max=5.0, num_layers=2,
                             strictly_local=False, ghost_cutoff=10.0, dtype=torch.float64,
                             family_version="0", extra={"species_from": "--species"},
                             stages_unavailable="", heads=["md17", "acac"], default_head=None)
    meta = artifact.build_metadata(source, src, {"parity": 0.0},
                                   {schema.STAGES_LAYERS: 2, schema.STAGES_FEATURE_WIDTHS: [4, 4],
                                    schema.STAGES_STATE_WIDTHS: [8, 8],
                                    schema.STAGES_EXCHANGE: "x_k"})
    top = {k.name for k in schema.KEYS if k.parent is None}
    assert set(meta) <= top
    assert {k.name for k in schema.PLUGIN_KEYS if k.parent is None} - set(meta) == {
        schema.KEY_STAGES_UNAVAILABLE,  # written only where stages are missing
        schema.KEY_DEFAULT_HEAD,  # written only where the model names one
        schema.KEY_COMPILED}  # written only into a compiled package
    assert meta[schema.KEY_HEADS] == ["md17", "acac"]
    assert meta[schema.KEY_DTYPE] == schema.DTYPE_FLOAT64
    assert meta[schema.KEY_FORMAT] == schema.FORMAT
    assert meta[schema.KEY_CALLING_CONVENTION] == schema.CALLING_CONVENTION


@pytest.mark.parametrize("path", sorted((ROOT / "inputs" / "models").glob("*.egraff.pt")),
                         ids=lambda p: p.name.split(".")[0])
def test_shipped_artifacts_speak_the_schema(path):
    """The artifacts already deployed (some older than stages) hold only keys the schema
    knows, and every key the plugin requires."""
    from egraff_lmp.deploy.artifact import read_metadata

    meta = read_metadata(path)
    assert set(meta) <= {k.name for k in schema.KEYS if k.parent is None}
    required = {schema.KEY_CALLING_CONVENTION, schema.KEY_TYPE_NAMES, schema.KEY_R_MAX,
                schema.KEY_GHOST_CUTOFF, schema.KEY_NUM_LAYERS, schema.KEY_STRICTLY_LOCAL}
    assert required <= set(meta)
    stages = meta.get(schema.KEY_STAGES)
    if stages is not None:
        assert set(stages) <= {k.name for k in schema.KEYS if k.parent == schema.KEY_STAGES}
        assert stages[schema.STAGES_LAYERS] == meta[schema.KEY_NUM_LAYERS]
        assert len(stages[schema.STAGES_FEATURE_WIDTHS]) == stages[schema.STAGES_LAYERS]


def test_the_wheel_ships_every_plugin_source():
    """pyproject's package data for egraff_lmp._plugin takes every file of deploy/plugin
    (the header and the split sources too)."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"]["egraff_lmp._plugin"] == "deploy/plugin"
    patterns = conf["package-data"]["egraff_lmp._plugin"]
    for f in PLUGIN.iterdir():
        if f.is_file():
            assert any(fnmatch(f.name, p) for p in patterns), f"{f.name} is not shipped"
    assert Path(PLUGIN / schema.HEADER).is_file()
