"""The contract between an artifact and its engines, written once: metadata keys and modes.

An artifact (``*.egraff.pt``, :mod:`egraff_lmp.deploy.artifact`) carries its metadata as a
JSON object in the TorchScript archive's extra file :data:`META_FILE`. The keys below are
the ones the artifact writer sets; those with ``plugin=True`` are read by the LAMMPS plugin
(``pair_style egraff``, deploy/plugin), which knows them only through the C++ header
``deploy/plugin/egraff_schema.h`` generated from this module::

    python -c "from egraff_lmp.deploy import schema; schema.write_header()"

(``schema.main(["--check"])`` says whether it is up to date; ``python -m
egraff_lmp.deploy.schema [--check]`` does the same, with a harmless RuntimeWarning from
runpy, since the package ``egraff_lmp.deploy`` imports this module before it runs.)

The header is committed and ships with the plugin's sources; ``tests/test_schema.py``
regenerates it, compares it with the committed one and checks that the plugin's sources
spell no key, method or mode name of their own. The plugin's modes (``pair_style egraff
... mode NAME``) have integer codes: ``extract("egraff_mode")`` returns the code of the mode
the plugin chose, :func:`mode_name` turns it back into its name.

This module imports only the standard library.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

# --- the archive -------------------------------------------------------------------------

#: the extra file of the TorchScript archive that holds the metadata (JSON)
META_FILE = "egraff_lmp.json"
#: value of :data:`KEY_FORMAT`
FORMAT = "egraff-lmp-artifact"
#: the calling convention (deploy/README.md) that deploy writes: 2 = 1 (``forward``) plus
#: :data:`METHOD_FORWARD_EDGES`, the edge gradients of per-atom virials
CALLING_CONVENTION = 2
#: the oldest convention the engines still run (1: everything but per-atom virials)
OLDEST_CALLING_CONVENTION = 1

# --- metadata keys (top level of the JSON object) ---------------------------------------

KEY_FORMAT = "format"
KEY_CALLING_CONVENTION = "calling_convention"
KEY_FAMILY = "family"
KEY_TYPE_NAMES = "type_names"
KEY_R_MAX = "r_max"
KEY_NUM_LAYERS = "num_layers"
KEY_STRICTLY_LOCAL = "strictly_local"
KEY_GHOST_CUTOFF = "ghost_cutoff"
KEY_DTYPE = "dtype"
KEY_SOURCE_FILE = "source_file"
KEY_SOURCE_SHA256 = "source_sha256"
KEY_VERSIONS = "versions"
KEY_CREATED_AT = "created_at"
KEY_VALIDATION = "validation"
KEY_UNITS = "units"
KEY_STAGES = "stages"
KEY_STAGES_UNAVAILABLE = "stages_unavailable"
KEY_SPECIES_FROM = "species_from"
KEY_COMPILED = "compiled"
KEY_HEADS = "heads"
KEY_DEFAULT_HEAD = "default_head"

# --- keys inside the KEY_STAGES object ---------------------------------------------------

STAGES_LAYERS = "layers"
STAGES_FEATURE_WIDTHS = "feature_widths"
STAGES_STATE_WIDTHS = "state_widths"
STAGES_EXCHANGE = "exchange"

# --- keys inside the KEY_COMPILED object (a compiled package only) ----------------------

COMPILED_TORCH = "torch_version"
COMPILED_DEVICE = "device_type"
COMPILED_CPU = "cpu_flags"
COMPILED_SECONDS = "compile_s"
COMPILED_FROM_SHA256 = "artifact_sha256"
COMPILED_HEAD = "for_head"

# --- values ------------------------------------------------------------------------------

DTYPE_FLOAT32 = "float32"
DTYPE_FLOAT64 = "float64"
#: what the plugin assumes where KEY_DTYPE is missing
DTYPE_DEFAULT = DTYPE_FLOAT64

# --- the head of a multi-head model -------------------------------------------------------

#: the buffer (0-dim int64) of an artifact with heads that selects the head, by its index in
#: KEY_HEADS: one tensor shared by every part of the model, filled in place by the engines
ATTR_HEAD = "head_index"

# --- methods of a staged artifact (StagedDeployedModel) ----------------------------------

METHOD_STAGE_EMBED = "stage_embed"
#: calling convention 2: (pos, types, edges, shifts, n_local) -> energies, forces, dE/dr_e
METHOD_FORWARD_EDGES = "forward_edges"
METHOD_STAGE_LAYER = "stage_layer"

# --- the programs of a compiled package (AOTIModelPackageLoader(path, name)) -------------

#: the one-call model (calling convention 1, padded: egraff_lmp/deploy/compiled.py)
PROGRAM_MODEL = "model"
#: prefixes of the compiled stages' programs, followed by the layer k
#: (egraff_lmp/deploy/compiled_stages.py); stage 0 is METHOD_STAGE_EMBED
PROGRAM_LAYER_FW = "layer_fw_"
PROGRAM_LAYER_BW = "layer_bw_"

# --- the plugin's extract() name for the mode it chose -----------------------------------

EXTRACT_MODE = "egraff_mode"
#: ... and for a committee's last max_devi_f (the style's force unit; the other six values of
#: the deviation: compute pair egraff)
EXTRACT_DEVI = "egraff_devi"


@dataclass(frozen=True)
class Key:
    """One metadata key: its JSON name, the C++ constant that spells it, its JSON type,
    units (empty: none), meaning, whether the plugin reads it and the object it sits in
    (None: the top level)."""

    name: str
    cpp: str
    kind: str
    unit: str
    meaning: str
    plugin: bool
    parent: str | None = None


KEYS: tuple[Key, ...] = (
    Key(KEY_FORMAT, "KEY_FORMAT", "string", "", f'always "{FORMAT}"', False),
    Key(KEY_CALLING_CONVENTION, "KEY_CALLING_CONVENTION", "int", "",
        "the calling convention (deploy/README.md): 1 forward only, 2 also "
        "METHOD_FORWARD_EDGES (per-atom virials); the plugin speaks "
        "OLDEST_CALLING_CONVENTION to CALLING_CONVENTION", True),
    Key(KEY_FAMILY, "KEY_FAMILY", "string", "",
        "the model family (mace, nequip, allegro, ...), named in messages", True),
    Key(KEY_TYPE_NAMES, "KEY_TYPE_NAMES", "list of strings", "",
        "element symbols in model type order (pair_coeff maps LAMMPS types onto them)",
        True),
    Key(KEY_R_MAX, "KEY_R_MAX", "float", "Å",
        "cutoff of the model's edges (the plugin's pair cutoff)", True),
    Key(KEY_NUM_LAYERS, "KEY_NUM_LAYERS", "int", "",
        "message-passing layers (1 for strictly local models)", True),
    Key(KEY_STRICTLY_LOCAL, "KEY_STRICTLY_LOCAL", "bool", "",
        "the energy of an atom depends on neighbours within r_max only (Allegro)", True),
    Key(KEY_GHOST_CUTOFF, "KEY_GHOST_CUTOFF", "float", "Å",
        "how deep the ghost shell of mode ghosts must be: num_layers x r_max, r_max for "
        "strictly local models", True),
    Key(KEY_DTYPE, "KEY_DTYPE", "string", "",
        "the model's dtype, DTYPE_FLOAT32 or DTYPE_FLOAT64 (default DTYPE_DEFAULT)", True),
    Key(KEY_SOURCE_FILE, "KEY_SOURCE_FILE", "string", "", "the trained file's name", False),
    Key(KEY_SOURCE_SHA256, "KEY_SOURCE_SHA256", "string", "", "its sha256", False),
    Key(KEY_VERSIONS, "KEY_VERSIONS", "object", "",
        "versions of egraff_lmp, torch and the family's packages at deploy time", False),
    Key(KEY_CREATED_AT, "KEY_CREATED_AT", "string", "", "ISO 8601 time of the deploy, UTC",
        False),
    Key(KEY_VALIDATION, "KEY_VALIDATION", "object", "",
        "deploy's validation results (parity, symmetry, staging, ...)", False),
    Key(KEY_UNITS, "KEY_UNITS", "string", "", "always metal (eV, Å)", False),
    Key(KEY_STAGES, "KEY_STAGES", "object or null", "",
        "the message-passing stages (null: none; absent in artifacts older than stages)",
        True),
    Key(KEY_STAGES_UNAVAILABLE, "KEY_STAGES_UNAVAILABLE", "string", "",
        "why a message-passing artifact has no stages (optional)", True),
    Key(KEY_SPECIES_FROM, "KEY_SPECIES_FROM", "string", "",
        "where the species came from, when not from the model itself (optional)", False),
    Key(KEY_HEADS, "KEY_HEADS", "list of strings", "",
        "the model's heads in readout order (multi-head MACE; absent: no heads); an engine "
        "selects one by filling the buffer ATTR_HEAD with its index", True),
    Key(KEY_DEFAULT_HEAD, "KEY_DEFAULT_HEAD", "string", "",
        "the head used where none is asked for (absent: the only head, or none: a "
        "multi-head artifact then needs one named)", True),
    Key(KEY_COMPILED, "KEY_COMPILED", "object", "",
        "present in an AOTInductor package (*.egraff.pt2) only: what it was compiled for "
        "and from", True),
    Key(COMPILED_TORCH, "COMPILED_TORCH", "string", "",
        "the torch version it was compiled with (a package runs with that version only)",
        True, KEY_COMPILED),
    Key(COMPILED_DEVICE, "COMPILED_DEVICE", "string", "",
        "the device type it was compiled for (cpu, cuda)", True, KEY_COMPILED),
    Key(COMPILED_CPU, "COMPILED_CPU", "string", "",
        "the CPU's instruction-set flags the generated code may use", False, KEY_COMPILED),
    Key(COMPILED_SECONDS, "COMPILED_SECONDS", "float", "s", "how long compiling took",
        False, KEY_COMPILED),
    Key(COMPILED_FROM_SHA256, "COMPILED_FROM_SHA256", "string", "",
        "sha256 of the TorchScript artifact it was compiled from and checked against",
        False, KEY_COMPILED),
    Key(COMPILED_HEAD, "COMPILED_HEAD", "string", "",
        "a compiled multi-head model: the one head it was compiled for", True, KEY_COMPILED),
    Key(STAGES_LAYERS, "STAGES_LAYERS", "int", "",
        "stages after stage_embed: one per layer, equal to num_layers", True, KEY_STAGES),
    Key(STAGES_FEATURE_WIDTHS, "STAGES_FEATURE_WIDTHS", "list of ints",
        "numbers per atom, in the model's dtype",
        "per layer k, the width of the features x_k that layer k reads from neighbours "
        "(forward-communicated before layer k >= 1, their gradients reverse-communicated)",
        True, KEY_STAGES),
    Key(STAGES_STATE_WIDTHS, "STAGES_STATE_WIDTHS", "list of ints",
        "numbers per atom, in the model's dtype",
        "per layer k, the width of the local state h_k (never exchanged)", False, KEY_STAGES),
    Key(STAGES_EXCHANGE, "STAGES_EXCHANGE", "string", "",
        "what is exchanged, in words", False, KEY_STAGES),
)

#: the C++ constant of each key's name
_CPP_OF = {k.name: k.cpp for k in KEYS if k.parent is None}

#: the keys pair_style egraff reads
PLUGIN_KEYS: tuple[Key, ...] = tuple(k for k in KEYS if k.plugin)


@dataclass(frozen=True)
class Mode:
    """A mode of ``pair_style egraff``: its keyword, its integer code (the C++ enum and
    ``extract("egraff_mode")``) and what it does."""

    name: str
    code: int
    cpp: str
    meaning: str


MODES: tuple[Mode, ...] = (
    Mode("auto", 0, "MODE_AUTO",
         "the plugin chooses (init_style): on one rank staged where the artifact has "
         "stages and more than chunk N atoms (chunk > 0), else images; on several ranks "
         "staged where the artifact has stages, else ghosts"),
    Mode("images", 1, "MODE_IMAGES",
         "one rank: ghosts folded onto their owners with a shift, the model sees the "
         "local atoms only and returns the virial"),
    Mode("ghosts", 2, "MODE_GHOSTS",
         "a ghost shell of ghost_cutoff (num_layers x r_max; r_max for strictly local "
         "models) whose atoms the model evaluates too, one call"),
    Mode("staged", 3, "MODE_STAGED",
         "artifacts with stages: a ghost shell of r_max, one model call per layer, "
         "features exchanged between layers"),
)

#: mode names, indexed by their code
MODE_NAMES: tuple[str, ...] = tuple(m.name for m in sorted(MODES, key=lambda m: m.code))
#: mode name -> code
MODE_CODES: dict[str, int] = {m.name: m.code for m in MODES}
assert [m.code for m in sorted(MODES, key=lambda m: m.code)] == list(range(len(MODES)))


def mode_name(code) -> str:
    """The name of the mode with integer ``code`` (an int, or the float that
    ``lmp.extract_pair("egraff_mode")`` returns)."""
    c = int(code)
    if not 0 <= c < len(MODE_NAMES) or c != code:
        raise ValueError(f"no pair_style egraff mode has code {code!r} (known: "
                         + ", ".join(f"{n} {i}" for i, n in enumerate(MODE_NAMES)) + ")")
    return MODE_NAMES[c]


def mode_code(name: str) -> int:
    """The integer code of the mode ``name``."""
    try:
        return MODE_CODES[name]
    except KeyError:
        raise ValueError(f"unknown pair_style egraff mode {name!r} (known: "
                         f"{', '.join(MODE_NAMES)})") from None


# --- the C++ header ----------------------------------------------------------------------

HEADER = "egraff_schema.h"

_OTHER = (  # (C++ constant, value, comment): the rest of the contract the plugin speaks
    ("META_FILE", META_FILE, "the archive's extra file holding the metadata (JSON)"),
    ("DTYPE_FLOAT32", DTYPE_FLOAT32, "values of KEY_DTYPE"),
    ("DTYPE_FLOAT64", DTYPE_FLOAT64, ""),
    ("DTYPE_DEFAULT", DTYPE_DEFAULT, "where KEY_DTYPE is missing"),
    ("METHOD_FORWARD_EDGES", METHOD_FORWARD_EDGES,
     "calling convention 2: (pos, types, edges, shifts, n_local) -> per-atom energies, forces, "
     "dE_local/dr_e per edge (eV/A), for per-atom virials"),
    ("METHOD_STAGE_EMBED", METHOD_STAGE_EMBED,
     "stage 0 of a staged artifact: (types) -> x0, h0, e0"),
    ("METHOD_STAGE_LAYER", METHOD_STAGE_LAYER,
     "layer k: (k, pos, types, edges, shifts, x_k, h_k) -> x_k+1, h_k+1, e_k"),
    ("PROGRAM_MODEL", PROGRAM_MODEL, "a compiled package's one-call program"),
    ("PROGRAM_LAYER_FW", PROGRAM_LAYER_FW,
     "a compiled package's layer k forward (prefix of k): (pos, types, edges, shifts, x_k, "
     "h_k), padded -> x_k+1, h_k+1, e_k, saved..."),
    ("PROGRAM_LAYER_BW", PROGRAM_LAYER_BW,
     "its backward (prefix of k): (pos, types, edges, shifts, x_k, h_k, saved... [, g_x_k+1, "
     "g_h_k+1 below the last layer]) -> g_pos [, g_x_k, g_h_k above layer 0]"),
    ("ATTR_HEAD", ATTR_HEAD,
     "the 0-dim int64 buffer of an artifact with heads: the index in KEY_HEADS of the head "
     "it evaluates, shared by all its parts, filled in place"),
    ("EXTRACT_MODE", EXTRACT_MODE, "Pair::extract() name of the chosen mode's code"),
    ("EXTRACT_DEVI", EXTRACT_DEVI,
     "Pair::extract() name of a committee's last max_devi_f (a double; all seven values: "
     "compute pair egraff)"),
)


def _cpp_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str, indent: str = "// ", width: int = 96) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(indent) + len(line) + 1 + len(w) > width:
            lines.append(indent + line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(indent + line)
    return lines


def cpp_header() -> str:
    """The text of ``deploy/plugin/egraff_schema.h``."""
    out = [
        "/* GENERATED by egraff_lmp/deploy/schema.py (its write_header()): do not edit;",
        "   change the schema module and regenerate (tests/test_schema.py checks that this",
        "   file is up to date).",
        "",
        "   The contract between an egraff-lmp artifact and pair_style egraff: the metadata",
        "   keys the plugin reads (a JSON object in the archive's extra file META_FILE), the",
        "   names of a staged artifact's methods and the plugin's modes with their codes. */",
        "",
        "#ifndef LMP_EGRAFF_SCHEMA_H",
        "#define LMP_EGRAFF_SCHEMA_H",
        "",
        "namespace LAMMPS_NS {",
        "namespace EgraffSchema {",
        "",
        "// the calling conventions this plugin speaks (KEY_CALLING_CONVENTION): the newest, which",
        "// deploy writes, and the oldest it still runs",
        f"constexpr int CALLING_CONVENTION = {CALLING_CONVENTION};",
        f"constexpr int OLDEST_CALLING_CONVENTION = {OLDEST_CALLING_CONVENTION};",
        "",
    ]
    for cpp, value, comment in _OTHER:
        if comment:
            out += _comment(comment)
        out.append(f"constexpr const char *{cpp} = {_cpp_string(value)};")
    out += ["", "// metadata keys the plugin reads (top level of the JSON object)"]
    for key in PLUGIN_KEYS:
        if key.parent is None:
            unit = f" ({key.unit})" if key.unit else ""
            out += _comment(f"{key.kind}{unit}: {key.meaning}")
            out.append(f"constexpr const char *{key.cpp} = {_cpp_string(key.name)};")
    for parent in (KEY_STAGES, KEY_COMPILED):
        out += ["", f"// keys inside the {_CPP_OF[parent]} object"]
        for key in PLUGIN_KEYS:
            if key.parent == parent:
                unit = f" ({key.unit})" if key.unit else ""
                out += _comment(f"{key.kind}{unit}: {key.meaning}")
                out.append(f"constexpr const char *{key.cpp} = {_cpp_string(key.name)};")
    out += ["", "// pair_style egraff ... mode NAME: the modes, by code (extract(EXTRACT_MODE))"]
    out.append("enum Mode : int {")
    for m in sorted(MODES, key=lambda m: m.code):
        out += _comment(f"{m.name}: {m.meaning}", indent="  // ")
        out.append(f"  {m.cpp} = {m.code},")
    out.append("};")
    out.append(f"constexpr int NUM_MODES = {len(MODES)};")
    names = ", ".join(_cpp_string(n) for n in MODE_NAMES)
    out.append(f"constexpr const char *MODE_NAMES[NUM_MODES] = {{{names}}};")
    out += ["", "}    // namespace EgraffSchema", "}    // namespace LAMMPS_NS", "", "#endif",
            ""]
    return "\n".join(out)


def header_path() -> Path:
    """Where the plugin's sources hold the header (the checkout's or the installed
    package's, as :func:`egraff_lmp.resources.plugin_sources` finds them)."""
    from ..resources import plugin_sources

    return plugin_sources() / HEADER


def write_header(path=None) -> Path:
    """Write the header (default: into the plugin's sources); returns its path."""
    p = Path(path) if path is not None else header_path()
    p.write_text(cpp_header(), encoding="utf-8")
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m egraff_lmp.deploy.schema",
                                 description="write the plugin's C++ header of the schema")
    ap.add_argument("path", nargs="?", help=f"default: the plugin's sources' {HEADER}")
    ap.add_argument("--check", action="store_true",
                    help="do not write: exit 1 if the header differs from the schema")
    args = ap.parse_args(argv)
    p = Path(args.path) if args.path else header_path()
    if args.check:
        same = p.is_file() and p.read_text(encoding="utf-8") == cpp_header()
        print(f"{p}: {'up to date' if same else 'differs from the schema: regenerate it'}")
        return 0 if same else 1
    print(write_header(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
