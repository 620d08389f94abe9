"""Extended XYZ (and anything else ASE reads frame by frame), through ``ase.io.iread``.

Energy (eV) and forces (eV/Å) are taken from the calculator results ASE attaches, or from
``atoms.info[energy_key]`` / ``atoms.arrays[forces_key]`` (``--energy-key``,
``--forces-key``). Frames are read one at a time.
"""

from __future__ import annotations

import numpy as np

from ..errors import located
from ..trajectory import Frame, Trajectory


def _ase_read_error(path, exc):
    return located(path, f"not readable as extxyz ({type(exc).__name__}: {exc})")


class ExtxyzTrajectory(Trajectory):
    format = "extxyz"

    def __init__(self, path, energy_key="energy", forces_key="forces", **_):
        self._energy_key, self._forces_key = energy_key, forces_key
        first = self._first(path)
        super().__init__(path, first.get_chemical_symbols())

    @staticmethod
    def _first(path):
        import ase.io

        try:
            return next(ase.io.iread(path, index=":", format="extxyz"))
        except StopIteration:
            raise located(path, "empty file: no frame") from None
        except Exception as exc:  # ASE raises many types for malformed text
            raise _ase_read_error(path, exc) from None

    def _count_frames(self) -> int:
        """Count frames from the atom-count lines without parsing atoms."""
        n = 0
        with open(self.path, encoding="utf-8", errors="replace") as f:
            while True:
                line = f.readline()
                if not line:
                    return n
                if not line.strip():
                    continue
                try:
                    natoms = int(line)
                except ValueError:
                    raise located(self.path, f"frame {n}: expected an atom count, found "
                                             f"{line.strip()[:40]!r}") from None
                for _ in range(natoms + 1):
                    if not f.readline():
                        raise located(self.path, f"truncated in frame {n}")
                n += 1

    def _iter_frames(self, indices):
        import ase.io

        if len(indices) == 0:
            return
        frames = ase.io.iread(self.path, index=slice(indices.start, indices.stop,
                                                      indices.step), format="extxyz")
        for i in indices:
            try:
                atoms = next(frames)
            except StopIteration:
                raise located(self.path, f"truncated before frame {i}") from None
            except Exception as exc:
                raise located(self.path, f"frame {i}: {type(exc).__name__}: {exc}") from None
            yield self._frame(i, atoms)

    def _frame(self, i, atoms) -> Frame:
        if atoms.get_chemical_symbols() != self.symbols:
            raise located(self.path, f"frame {i}: the atoms differ from frame 0")
        results = atoms.calc.results if atoms.calc is not None else {}
        energy = atoms.info.get(self._energy_key, results.get(self._energy_key))
        if energy is None and self._energy_key == "energy":
            energy = results.get("free_energy")
        forces = atoms.arrays.get(self._forces_key, results.get(self._forces_key))
        pbc = tuple(bool(p) for p in atoms.pbc)
        if any(pbc) and not all(pbc):
            raise located(self.path, f"frame {i}: mixed periodicity {pbc} is not supported")
        return Frame(
            index=i,
            positions=np.array(atoms.positions, dtype=np.float64),
            cell=np.array(atoms.cell[:], dtype=np.float64) if all(pbc) else None,
            pbc=pbc,
            energy=None if energy is None else float(energy),
            forces=None if forces is None else np.array(forces, dtype=np.float64),
        )


