"""Deploy: a trained model of a family egraff-lmp knows (:data:`FAMILIES`, the records of
:mod:`.families.registry`) → one validated artifact.

``deploy(source, output)`` picks the family adapter, builds the artifact (TorchScript,
see :mod:`.artifact`), checks parity with the family's own ASE calculator and the model's
symmetry on a configuration from the user's data (or random cells of the model's species),
and writes the artifact only when every check passes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import EgraffError, located
from . import artifact as _artifact
from . import checks
from .families import registry
from .families.species import refuse_given

#: family name -> its record (:class:`~.families.registry.Family`; ``.adapter``: its module)
FAMILIES = registry.FAMILIES


def _family_of(path, family=None) -> registry.Family:
    p = Path(path)
    if not p.exists():
        raise located(path, "no such file")
    if p.is_file() and p.stat().st_size == 0:
        raise located(path, "empty file: not a model")
    from .sniff import sniff

    kind = sniff(p)
    if kind.kind == "pt2":
        raise located(path, "a torch.export/AOTInductor .pt2 package cannot be wrapped in "
                            "TorchScript: deploy the checkpoint or model it was made from")
    if kind.kind == "torchscript" and "egraff_lmp" in kind.modules:
        raise located(path, "already an egraff-lmp artifact: use it as it is ('deploy "
                            "--info' / '--check' read it)")
    if family is not None:
        return registry.get(family, path)
    if kind.family is not None:
        return FAMILIES[kind.family]
    for fam in FAMILIES.values():
        if fam.claims(path):
            return fam
    refs = ", ".join(sorted(kind.modules - {"torch", "collections", "__builtin__",
                                            "builtins", "_codecs", "__torch__"})) or "none"
    raise located(path, f"cannot tell the model family from the file's content (a "
                        f"{kind.kind} file; packages it refers to: {refs}): give --family "
                        f"({registry.listed()})")


def load_source(path, family=None, species=None):
    """The family adapter's view of a trained model (runs the family's loader).
    ``species``: element symbols in model order, for families whose files carry none."""
    fam = _family_of(path, family)
    if species and not fam.accepts_species:
        refuse_given(path, fam.model)
    return fam.load(path, species)


def configurations(type_names, r_max, data=None, frames=2, min_width=0.0):
    """Configurations for the checks: frames of ``data`` or random cells of the species
    (with at least ``min_width`` Å between opposite faces, for families whose own code
    needs wide cells)."""
    if data is not None:
        from ..io import read_trajectory

        traj = read_trajectory(data)
        out = []
        for f in traj.frames(0, frames):
            out.append(f.to_atoms(traj.symbols))
        return out, f"{data} (first {len(out)} frames)"
    n = 6
    # the sheared cell's narrowest width is 0.97 of its cube root; 0.9: the compressed one
    v = checks.volume_per_atom(type_names)
    while min_width and (v * n * len(type_names)) ** (1 / 3) * 0.9 * 0.97 < min_width:
        n += 1
    return [checks.random_configuration(type_names, r_max, seed=k, scale=s, n_per_species=n)
            for k, s in enumerate((0.9, 1.1))], "random cells (scaled 0.9 and 1.1)"


def validate(module_path, source=None, data=None, type_names=None, r_max=None,
             dtype="float64") -> dict:
    """Parity (when the ``source`` model is given), symmetry and staging of the artifact at
    ``module_path``, head by head for a multi-head model (the report's ``heads``: each head's
    checks); raises :class:`EgraffError` naming each failed check."""
    from ..calculator import DeployedCalculator

    art = _artifact.load(module_path)
    min_width = 0.0
    if source is not None:
        type_names, r_max = source.type_names, source.r_max
        dtype = str(source.dtype).replace("torch.", "")
        min_width = source.reference_min_width
    configs, where = configurations(type_names, r_max, data, min_width=min_width)
    report = {"configurations": where}
    bad = []
    heads = art.heads if len(art.heads) > 1 else [None]
    for head in heads:
        calc = DeployedCalculator(art, head=head)
        checked = {}
        if source is not None:
            reference = source.reference(head=head) if head else source.reference()
            checked["parity"] = checks.parity(calc, reference, configs)
        checked["symmetry"] = checks.symmetry(calc, configs[0])
        if art.metadata.get("stages") and all(configs[0].pbc):
            checked["staging"] = checks.staging(art, calc, configs[0])
        if head is None:
            report.update(checked)
        else:
            report.setdefault("heads", {})[head] = checked
        bad += [f"head {head}: {b}" if head else b
                for b in checks.failures(checked, dtype, len(configs[0]))]
    report["tolerance"] = checks.tolerance(dtype)
    if bad:
        hint = ("" if data is not None else
                f" (on {where}, synthetic structures of the model's elements: give --data "
                "FRAMES, e.g. its training or test data, to validate on real ones)")
        raise EgraffError("validation failed: " + "; ".join(bad) + hint)
    return report


def deploy(source_path, output, family=None, data=None, species=None) -> Path:
    """Build, validate and write the artifact for ``source_path``; returns its path."""
    source = load_source(source_path, family, species)
    module = _artifact.script(source)
    stages = (_artifact.stage_widths(module, source.num_layers) if source.stages is not None
              else None)
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / "draft.egraff.pt"
        _artifact.save(module, _artifact.build_metadata(source, source_path, {}, stages),
                       draft)
        try:
            report = validate(draft, source, data)
        except EgraffError as exc:
            raise located(source_path, f"{exc}; artifact not written") from None
    meta = _artifact.build_metadata(source, source_path, report, stages)
    return _artifact.save(module, meta, output)


def source_of(meta: dict, artifact_path, source_path, family=None):
    """The trained model an artifact (its metadata ``meta``) was deployed from, loaded:
    ``source_path`` must be that file (sha256), its family the artifact's unless
    ``family`` says otherwise, its species the artifact's where its files carry none."""
    if _artifact.sha256(source_path) != meta["source_sha256"]:
        raise located(source_path, f"is not the model {artifact_path} was built from "
                                   "(sha256 differs)")
    fam = registry.get(family, source_path) if family else (
        registry.of_artifact(meta["family"]) or registry.get(meta["family"], source_path))
    species = meta["type_names"] if fam.accepts_species else None
    return load_source(source_path, fam.name, species)


def check(artifact_path, source_path=None, family=None, data=None) -> dict:
    """Validate an existing artifact again: symmetry, and parity when its source is given."""
    meta = _artifact.read_metadata(artifact_path)
    source = (None if source_path is None
              else source_of(meta, artifact_path, source_path, family))
    try:
        return validate(artifact_path, source, data, meta["type_names"], meta["r_max"],
                        meta["dtype"])
    except EgraffError as exc:
        raise located(artifact_path, str(exc)) from None


__all__ = ["deploy", "check", "load_source", "FAMILIES"]
