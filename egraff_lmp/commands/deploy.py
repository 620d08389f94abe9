"""``egraff-lmp deploy``: a trained model into a validated artifact; ``--info``, ``--check``."""

from __future__ import annotations

from .choices import LazyChoices, family_names


def add_parser(sub) -> None:
    p = sub.add_parser(
        "deploy", help="turn a trained model into a validated egraff-lmp artifact",
        description="Turn a model trained by its family's own trainer (a checkpoint, "
        "package or model file; the family is read from the file's content, see --family) "
        "into one TorchScript artifact with its metadata, after checking parity with the "
        "family's own calculator and symmetry. Loading a pickled model (*.model, *.ckpt) "
        "runs code from that file: egraff-lmp loads only the file you name, and never "
        "unpickles anything when it loads a deployed artifact.")
    p.add_argument("model", metavar="MODEL|ARTIFACT")
    p.add_argument("-o", "--output", help="artifact path (default: MODEL's stem + .egraff.pt)")
    p.add_argument("--family", choices=LazyChoices(family_names), metavar="FAMILY",
                   help="model family: %(choices)s (default: read from the file's content)")
    p.add_argument("--species", type=lambda s: [x for x in s.split(",") if x],
                   metavar="EL,EL,...",
                   help="element symbols in model order, for models that embed atomic "
                   "numbers and record no species; default: the training data the model "
                   "names, where it names one")
    p.add_argument("--data", metavar="TRAJ",
                   help="configurations for the checks (first frames; default: random "
                   "compressed/expanded cells of the model's species)")
    p.add_argument("--compile", action="store_true",
                   help="also write the AOTInductor package (MODEL's stem + .egraff.pt2; "
                   "see 'egraff-lmp compile')")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--info", action="store_true", help="print ARTIFACT's metadata")
    g.add_argument("--check", action="store_true",
                   help="validate ARTIFACT again (symmetry; parity too with --source)")
    p.add_argument("--source", metavar="MODEL", help="with --check: the trained model")
    p.set_defaults(func=main)


def main(args) -> int:
    import json
    from pathlib import Path

    from .. import deploy

    if args.info:
        from ..deploy.artifact import read_metadata

        print(json.dumps(read_metadata(args.model), indent=1, ensure_ascii=False))
        return 0
    if args.check:
        report = deploy.check(args.model, args.source, args.family, args.data)
        print(json.dumps(report, indent=1))
        print(f"{args.model}: all checks passed")
        return 0
    src = Path(args.model)
    out = args.output or str(src.parent / (src.name.split(".")[0] + ".egraff.pt"))
    path = deploy.deploy(args.model, out, args.family, args.data, args.species)
    from ..deploy.artifact import read_metadata

    meta = read_metadata(path)
    v = meta["validation"]
    print(f"wrote {path}: {meta['family']} {','.join(meta['type_names'])}, r_max "
          f"{meta['r_max']:g} Å, {meta['num_layers']} layers, ghost cutoff "
          f"{meta['ghost_cutoff']:g} Å, {meta['dtype']}")
    heads = v.get("heads") or {None: v}
    if meta.get("heads") and len(meta["heads"]) > 1:
        default = meta.get("default_head")
        print(f"heads: {', '.join(meta['heads'])} (" + (f"default {default}" if default else
              "no default: pair_style egraff ... head NAME chooses") + ")")
    for head, r in heads.items():
        at = f"head {head}: " if head else ""
        ea = r["parity"].get("atom_energies")
        print(f"{at}parity vs the family calculator: forces {r['parity']['forces']:.2e} "
              f"eV/Å, energy {r['parity']['energy_per_atom']:.2e} eV/atom"
              + ("" if ea is None else f", per-atom energies {ea:.2e} eV") + "; symmetry: "
              + ", ".join(f"{k} {x['forces']:.1e} eV/Å" for k, x in r["symmetry"].items()))
    st = meta.get("stages")
    if st:
        sv = [r["staging"] for r in heads.values() if r.get("staging")]
        check = ("" if not sv else f"; two sub-domains vs one call: forces "
                 f"{max(x['forces'] for x in sv):.1e} eV/Å, energy "
                 f"{max(x['energy'] for x in sv):.1e} eV")
        print(f"stages: {st['layers']} layers exchanging "
              f"{','.join(str(w) for w in st['feature_widths'])} features per atom{check}")
    elif meta.get("stages_unavailable"):
        print(f"no stages ({meta['stages_unavailable']}): on several ranks it runs with a "
              f"ghost shell of {meta['ghost_cutoff']:g} Å")
    if args.compile:
        from ..deploy.compiled import compile_artifact
        from ..deploy.compiled import read_metadata as read_package
        from .compile import compiled_summary

        pkg = compile_artifact(path, args.model, family=args.family, data=args.data)
        print(compiled_summary(pkg, read_package(pkg)))
    return 0
