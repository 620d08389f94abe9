"""``egraff-lmp compile ARTIFACT``: an artifact's AOTInductor package (``*.egraff.pt2``)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compile", help="compile an artifact into an AOTInductor package (*.egraff.pt2)",
        description="Compile a deployed artifact's model, energy and forces and virial by "
        "autograd, into an AOTInductor package (generated C++), from the trained model it "
        "was deployed from; the package is checked against the artifact (forces and "
        "energies within deploy's tolerances) before it is written. It runs with this torch "
        "version, device type and CPU instruction set only: the TorchScript artifact stays "
        "the portable form. pair_style egraff and DeployedCalculator take either file.")
    p.add_argument("artifact", metavar="ARTIFACT")
    p.add_argument("-o", "--output",
                   help="package path (default: ARTIFACT's stem + .egraff.pt2)")
    p.add_argument("--source", metavar="MODEL",
                   help="the trained model (default: the file the artifact names, beside it)")
    p.add_argument("--data", metavar="TRAJ",
                   help="configurations for the parity check (default: deploy's)")
    p.add_argument("--device", default="cpu", metavar="cpu",
                   help="device to compile for (cpu only so far)")
    p.add_argument("--head", metavar="NAME",
                   help="a multi-head artifact: the head to compile (the package runs that "
                   "head only; default: the artifact's default head)")
    p.set_defaults(func=main)


def main(args) -> int:
    from ..deploy.compiled import compile_artifact, read_metadata

    path = compile_artifact(args.artifact, args.source, args.output, data=args.data,
                            device=args.device, head=args.head)
    print(compiled_summary(path, read_metadata(path)))
    return 0


def compiled_summary(path, meta) -> str:
    """What ``compile`` and ``deploy --compile`` print about the package at ``path``."""
    c, v = meta["compiled"], meta["validation"]["compiled_parity"]
    head = f" (head {c['head']})" if c.get("head") else ""
    return (f"wrote {path}{head}: compiled in {c['compile_s']:.0f} s for {c['device_type']} "
            f"({c['cpu_flags']}, torch {c['torch_version']}); against the TorchScript "
            f"artifact: forces {v['forces']:.2e} eV/Å, energy {v['energy_per_atom']:.2e} "
            "eV/atom")
