"""What a model file is, read from its content without running any of it.

``sniff(path)`` opens the file as a zip archive (what ``torch.save``, ``torch.jit.save``,
``torch.package``/``nequip-package`` and ``torch.export``/AOTInductor write) or as a bare
pickle (``torch.save``'s legacy format) and reports:

- ``kind``: ``"torchscript"`` (a ``code/__torch__/`` tree), ``"pt2"`` (an ``archive_format``
  entry: torch.export / AOTInductor), ``"torch-package"`` (``.data/version``),
  ``"torch-save"`` (a ``data.pkl`` or a bare pickle), or ``"unknown"``;
- ``modules``: the top-level Python packages the file refers to: the classes its pickles
  name (read with ``pickletools``, never unpickled), the ``__torch__/<package>/`` paths of
  TorchScript code, the packages a torch.package holds, and dotted ``_target_``-style
  strings such as ``nequip.model.NequIPGNNModel`` in a Lightning checkpoint's
  hyper-parameters.

``family_of(kind)`` maps those packages to an egraff-lmp family name. Which packages,
content markers and TorchScript metadata mean which family is read from the family records
(:mod:`.families.registry`) on every call.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .families import registry


def _dotted(packages) -> re.Pattern:
    """Dotted names inside one of ``packages`` (``nequip.model.NequIPGNNModel``)."""
    return re.compile(r"^(" + "|".join(map(re.escape, packages)) +
                      r")(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass
class FileKind:
    kind: str
    modules: set[str] = field(default_factory=set)

    @property
    def family(self) -> str | None:
        return family_of(self)


def family_of(kind: FileKind) -> str | None:
    """The one family whose packages the file refers to (None: none, or several)."""
    packages = registry.package_map()
    found = {packages[m] for m in kind.modules if m in packages}
    return found.pop() if len(found) == 1 else None


def _pickle_modules(data: bytes) -> set[str]:
    """Top-level packages named by the classes (GLOBAL/STACK_GLOBAL) and dotted package
    strings of every pickle in ``data`` (several may follow each other)."""
    dotted = _dotted(registry.package_map())
    markers = [(pattern, f.packages[0]) for f in registry.FAMILIES.values()
               for pattern in f.marker_patterns]
    out, pos = set(), 0
    while pos < len(data):
        strings: list[str] = []
        try:
            for op, arg, at in pickletools.genops(data[pos:]):
                if op.name == "GLOBAL":
                    out.add(str(arg).split()[0].split(".")[0])
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    out.add(strings[-2].split(".")[0])
                elif isinstance(arg, str):
                    strings.append(arg)
                    if dotted.match(arg):
                        out.add(arg.split(".")[0])
                    else:  # a family's content marker stands for its first package
                        out.update(p for pattern, p in markers if pattern.fullmatch(arg))
                if op.name == "STOP":
                    pos += at + 1
                    break
            else:
                break
        except Exception:  # noqa: BLE001 - not (or no longer) a pickle: stop reading
            break
    return out


def sniff(path) -> FileKind:
    p = Path(path)
    if p.is_dir():
        return FileKind("directory")
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
                return FileKind("pt2")
            code = [n for n in names if "/code/__torch__/" in n or n.startswith("code/")]
            if code:
                # every package named along the code paths (torch.package mangles the top
                # level: __torch__/_torch_package_0_/nequip/...)
                mods = {part for n in code if "__torch__/" in n
                        for part in n.split("__torch__/", 1)[1].split("/")[:-1]
                        if part != "torch" and not part.startswith("_torch_package_")}
                extra = {n.rsplit("/extra/", 1)[1] for n in names if "/extra/" in n}
                for f in registry.FAMILIES.values():  # metadata a family's compiler writes
                    if f.torchscript_extra_files and f.torchscript_extra_files <= extra:
                        mods.add(f.packages[0])
                return FileKind("torchscript", mods)
            if any(n.endswith(".data/version") for n in names):
                packages = registry.package_map()
                return FileKind("torch-package", {m for n in names for m in n.split("/")
                                                  if m in packages})
            pkl = [n for n in names if n.endswith("data.pkl")]
            if pkl:
                return FileKind("torch-save", _pickle_modules(zf.read(pkl[0])))
            return FileKind("unknown")
    with open(p, "rb") as fh:
        head = fh.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            fh.seek(0)
            return FileKind("torch-save", _pickle_modules(fh.read()))
    return FileKind("unknown")
