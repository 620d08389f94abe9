"""NequIP-style ``.npz`` trajectories.

Keys: ``pos`` (frames, atoms, 3) Å, ``atomic_numbers`` (atoms,) or (frames, atoms),
optional ``cell`` (3, 3) or (frames, 3, 3) Å, ``pbc`` (3,) or (frames, 3), ``energy``
(frames,) or (frames, 1) eV, ``forces`` (frames, atoms, 3) eV/Å. Key names can be changed
with ``energy_key`` / ``forces_key``.

``pos`` and ``forces`` are streamed a frame at a time straight out of the zip member, so
memory does not grow with the number of frames (energies and cells, a few numbers a frame,
are read whole).
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

from ..errors import located
from ..trajectory import Frame, Trajectory


class _NpyStream:
    """Row-wise random access to one ``.npy`` member of a zip file.

    A stored (uncompressed, as ``np.savez`` writes) member is read at absolute offsets of
    the zip file itself: ``ZipExtFile.seek`` returned stale bytes after a forward seek on
    Python 3.12.3 (frames 50 and 100 of the GeTe reference came back wrong on a GPU
    machine). A compressed member goes through ``ZipExtFile`` (a backward seek re-reads it
    from the start: slow, but right).
    """

    def __init__(self, zf: zipfile.ZipFile, name: str, path):
        info = zf.getinfo(name)
        if info.compress_type == zipfile.ZIP_STORED:
            self._f = open(zf.filename, "rb")
            self._f.seek(info.header_offset)
            local = self._f.read(30)  # the member's local header: its own name/extra sizes
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise located(path, f"'{name}': corrupt zip member header")
            n_name, n_extra = struct.unpack("<HH", local[26:30])
            self._f.seek(info.header_offset + 30 + n_name + n_extra)
        else:
            self._f = zf.open(name)
        version = np.lib.format.read_magic(self._f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._f)
        if fortran or dtype.hasobject:
            raise located(path, f"'{name}' is not a plain C-ordered numeric array")
        self.shape, self.dtype = shape, dtype
        self._start = self._f.tell()
        self._row_items = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        self._row_bytes = self._row_items * dtype.itemsize

    def row(self, i: int) -> np.ndarray:
        self._f.seek(self._start + i * self._row_bytes)
        data = self._f.read(self._row_bytes)
        if len(data) != self._row_bytes:
            raise EOFError
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:]).astype(np.float64)

    def close(self):
        self._f.close()


class NpzTrajectory(Trajectory):
    format = "npz"

    def __init__(self, path, energy_key="energy", forces_key="forces", **_):
        self._energy_key, self._forces_key = energy_key, forces_key
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise located(path, f"not a readable .npz file ({exc})") from None
        names = {n[:-4] for n in self._zip.namelist() if n.endswith(".npy")}
        if "pos" not in names:
            raise located(path, f"no 'pos' array (has: {', '.join(sorted(names)) or 'nothing'})")
        if "atomic_numbers" not in names:
            raise located(path, "no 'atomic_numbers' array: the species are unknown")
        self._names = names
        small = np.load(path, allow_pickle=False)
        try:
            numbers = np.asarray(small["atomic_numbers"])
            self._cell = np.asarray(small["cell"], dtype=float) if "cell" in names else None
            self._pbc = np.asarray(small["pbc"], dtype=bool) if "pbc" in names else None
            self._energy = (np.asarray(small[energy_key], dtype=float).reshape(-1)
                            if energy_key in names else None)
        except ValueError as exc:
            raise located(path, f"unreadable array ({exc})") from None
        finally:
            small.close()
        if numbers.ndim == 2:
            if not np.all(numbers == numbers[0]):
                raise located(path, "atomic_numbers change between frames")
            numbers = numbers[0]
        from ase.data import chemical_symbols

        if numbers.min() < 1 or numbers.max() >= len(chemical_symbols):
            raise located(path, f"unknown atomic number(s) in {sorted(set(numbers.tolist()))}")
        self._pos = _NpyStream(self._zip, "pos.npy", path)
        if len(self._pos.shape) != 3 or self._pos.shape[2] != 3:
            raise located(path, f"'pos' has shape {self._pos.shape}, expected (frames, atoms, 3)")
        if self._pos.shape[1] != len(numbers):
            raise located(path, f"'pos' has {self._pos.shape[1]} atoms but atomic_numbers "
                                f"has {len(numbers)}")
        self._forces = (_NpyStream(self._zip, f"{forces_key}.npy", path)
                        if forces_key in names else None)
        if self._energy is not None and len(self._energy) != self._pos.shape[0]:
            raise located(path, f"'{energy_key}' has {len(self._energy)} values for "
                                f"{self._pos.shape[0]} frames")
        super().__init__(path, [chemical_symbols[z] for z in numbers])

    def _count_frames(self) -> int:
        return self._pos.shape[0]

    def _per_frame(self, array, i, ndim):
        if array is None:
            return None
        return array[i] if array.ndim == ndim + 1 else array

    def _iter_frames(self, indices):
        for i in indices:
            try:
                pos = self._pos.row(i)
                forces = self._forces.row(i) if self._forces is not None else None
            except (EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
                raise located(self.path, f"frame {i} could not be read ({exc or 'truncated'})"
                              ) from None
            cell = self._per_frame(self._cell, i, 2)
            pbc = self._per_frame(self._pbc, i, 1)
            if cell is not None and pbc is None:
                pbc = np.ones(3, dtype=bool)
            if cell is None or not np.any(pbc):
                cell, pbc = None, np.zeros(3, dtype=bool)
            elif not np.all(pbc):
                raise located(self.path, f"frame {i}: mixed periodicity {pbc.tolist()} is "
                                         "not supported (all or none)")
            yield Frame(index=i, positions=pos, cell=cell, pbc=tuple(bool(p) for p in pbc),
                        energy=None if self._energy is None else float(self._energy[i]),
                        forces=forces)
