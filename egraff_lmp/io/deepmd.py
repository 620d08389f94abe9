"""DeePMD-kit ``raw``/``npy`` system directories.

Layout: ``type.raw`` (a type index per atom), ``type_map.raw`` (element symbol per type),
``set.*/coord.npy`` (frames, atoms·3) Å, ``set.*/box.npy`` (frames, 9) Å, optional
``set.*/energy.npy`` (frames,) eV and ``set.*/force.npy`` (frames, atoms·3) eV/Å. A
``nopbc`` file, or no ``box.npy``, marks a non-periodic system. Sets are read in name order
and memory-mapped, so frames stream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import located
from ..trajectory import Frame, Trajectory


def looks_like_deepmd(path) -> bool:
    return Path(path).is_dir() and (Path(path) / "type.raw").is_file()


class DeepmdTrajectory(Trajectory):
    format = "deepmd"

    def __init__(self, path, **_):
        root = Path(path)
        if not root.is_dir():
            raise located(path, "not a directory (a DeePMD system is a directory)")
        if not (root / "type.raw").is_file():
            raise located(path, "not a DeePMD system: no type.raw")
        if not (root / "type_map.raw").is_file():
            raise located(path, "no type_map.raw: the element of each DeePMD type is unknown")
        types = np.loadtxt(root / "type.raw", dtype=int, ndmin=1)
        type_map = (root / "type_map.raw").read_text().split()
        if types.size == 0 or types.min() < 0 or types.max() >= len(type_map):
            raise located(path, f"type.raw uses types outside type_map.raw ({type_map})")
        self._sets = sorted(p for p in root.glob("set.*") if p.is_dir())
        if not self._sets:
            raise located(path, "no set.* directories")
        self._nopbc = (root / "nopbc").exists()
        self._arrays = []
        for s in self._sets:
            if not (s / "coord.npy").is_file():
                raise located(s, "no coord.npy")
            arrays = {}
            for name in ("coord", "box", "energy", "force"):
                f = s / f"{name}.npy"
                if f.is_file():
                    try:
                        arrays[name] = np.load(f, mmap_mode="r", allow_pickle=False)
                    except ValueError as exc:
                        raise located(f, f"not a .npy array ({exc})") from None
            n = arrays["coord"].shape[0]
            if arrays["coord"].ndim != 2 or arrays["coord"].shape[1] != 3 * len(types):
                raise located(s / "coord.npy", f"shape {arrays['coord'].shape} does not fit "
                                               f"{len(types)} atoms")
            for name in ("box", "energy", "force"):
                if name in arrays and arrays[name].shape[0] != n:
                    raise located(s / f"{name}.npy", f"{arrays[name].shape[0]} frames, "
                                                     f"coord.npy has {n}")
            self._arrays.append(arrays)
        super().__init__(path, [type_map[t] for t in types])

    def _count_frames(self) -> int:
        return sum(a["coord"].shape[0] for a in self._arrays)

    def _iter_frames(self, indices):
        bounds = np.cumsum([0] + [a["coord"].shape[0] for a in self._arrays])
        for i in indices:
            k = int(np.searchsorted(bounds, i, side="right") - 1)
            a, j = self._arrays[k], i - bounds[k]
            periodic = "box" in a and not self._nopbc
            yield Frame(
                index=i,
                positions=np.array(a["coord"][j], dtype=np.float64).reshape(-1, 3),
                cell=np.array(a["box"][j], dtype=np.float64).reshape(3, 3) if periodic else None,
                pbc=(periodic,) * 3,
                energy=float(np.asarray(a["energy"][j]).reshape(-1)[0]) if "energy" in a else None,
                forces=(np.array(a["force"][j], dtype=np.float64).reshape(-1, 3)
                        if "force" in a else None),
            )
