"""LAMMPS text dumps (``dump atom``/``dump custom``), parsed by MDAnalysis' ``LAMMPSDUMP``.

Columns: ``id`` (atoms are sorted by id), ``type`` and/or ``element``, coordinates in any of
LAMMPS' conventions (``x y z``, scaled ``xs ys zs``, unwrapped ``xu yu zu``, ``xsu ysu zsu``),
optional forces ``fx fy fz``. Orthogonal and triclinic boxes. A dump of a run in another
unit style than metal (``units=``, e.g. ``real``) is converted to Å, eV/Å and eV with LAMMPS'
constants (:mod:`egraff_lmp.units`); by default it is read as metal, as written.
MDAnalysis parses coordinates and forces in float32 (≈1e-6 Å at 20 Å).

Types become elements by, in this order: ``types`` (``--types Ge,Te``: type 1 is Ge), the
dump's ``element`` column, or the ``Masses`` of a LAMMPS data file (``data=``; a comment
naming the element after each mass wins over the nearest standard mass).

Per-frame potential energy (eV) comes from a LAMMPS log (``log=``, thermo column
``log_column``, default ``PotEng``, matched by step), or from a per-atom dump column
(``energy_column=``, e.g. ``c_pe`` of ``compute pe/atom``) summed over atoms.

Before MDAnalysis reads anything the file is scanned once for its structure, so a truncated
frame, a changing atom count or missing columns are reported with the frame they occur in.
"""

from __future__ import annotations

import bz2
import gzip

import numpy as np

from ..errors import EgraffError, located
from ..trajectory import Frame, Trajectory, perpendicular_widths
from ..units import unit_style
from .lammps_log import potential_energy_by_step

_COORDS = (("x", "y", "z"), ("xs", "ys", "zs"), ("xu", "yu", "zu"), ("xsu", "ysu", "zsu"))


def open_text(path):
    """A text stream of ``path``, decompressed when its first bytes say gzip or bzip2
    (the compressions MDAnalysis reads; by content, not by suffix)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if head[:3] == b"BZh":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if head == b"\xfd7zXZ\x00":
        raise located(path, "xz-compressed: decompress it first (xz -d), or recompress it "
                            "with gzip or bzip2, which are read directly")
    return open(path, encoding="utf-8", errors="replace")


def looks_like_dump(path) -> bool:
    try:
        with open_text(path) as f:
            return f.readline().startswith("ITEM: TIMESTEP")
    except (OSError, EOFError, EgraffError):
        return False


def _expect(path, line: str, prefix: str, frame: int):
    if not line:
        raise located(path, f"truncated in frame {frame}: file ends before '{prefix}'")
    if not line.startswith(prefix):
        raise located(path, f"frame {frame}: expected '{prefix}', found {line.strip()[:40]!r}")


def _int(path, text: str, what: str, frame: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise located(path, f"frame {frame}: {what} is not an integer: {text.strip()!r}"
                      ) from None


def scan_dump(path):
    """Check the structure of every frame.

    Returns (n_atoms, columns, first-frame rows split in words, steps, periodic) where
    ``periodic`` is True for ``pp pp pp`` boundaries and False for none periodic.

    Reads the file once, line by line (no parsing of atom lines beyond the first frame).
    """
    steps: list[int] = []
    widths: list[float] = []
    n_atoms = columns = first_rows = periodic = None
    with open_text(path) as f:
        frame = 0
        while True:
            line = f.readline()
            if not line:
                break
            if not line.strip() and frame > 0:
                continue
            _expect(path, line, "ITEM: TIMESTEP", frame)
            steps.append(_int(path, f.readline(), "the timestep", frame))
            _expect(path, f.readline(), "ITEM: NUMBER OF ATOMS", frame)
            n = _int(path, f.readline(), "the number of atoms", frame)
            if n_atoms is None:
                n_atoms = n
            elif n != n_atoms:
                raise located(path, f"atom count changes from {n_atoms} to {n} in frame "
                                    f"{frame}; one system per trajectory is supported")
            box = f.readline()
            _expect(path, box, "ITEM: BOX BOUNDS", frame)
            if periodic is None:
                periodic = _periodicity(path, box.split()[3:])
            bounds = []
            for k in range(3):
                words = f.readline().split()
                if len(words) not in (2, 3):
                    raise located(path, f"frame {frame}: box bound line {k + 1} is malformed"
                                        if words else f"truncated in frame {frame} (box)")
                bounds.append(words)
            widths.append(_smallest_width(path, bounds, frame))
            header = f.readline()
            _expect(path, header, "ITEM: ATOMS", frame)
            cols = header.split()[2:]
            if columns is None:
                columns = cols
                _check_columns(path, cols)
            elif cols != columns:
                raise located(path, f"frame {frame}: columns change from {' '.join(columns)} "
                                    f"to {' '.join(cols)}")
            rows = []
            for k in range(n):
                row = f.readline()
                if not row or row.startswith("ITEM:"):
                    raise located(path, f"truncated in frame {frame} (step {steps[-1]}): "
                                        f"{k} of {n} atom lines")
                if frame == 0:
                    rows.append(row.split())
                    if len(rows[-1]) != len(cols):
                        raise located(path, f"frame 0, atom line {k + 1}: {len(rows[-1])} "
                                            f"fields for {len(cols)} columns")
            if frame == 0:
                first_rows = rows
            frame += 1
    if n_atoms is None:
        raise located(path, "empty file: no frame")
    if n_atoms == 0:
        raise located(path, "the dump has no atoms")
    return n_atoms, columns, first_rows, steps, periodic, widths


def _smallest_width(path, bounds, frame) -> float:
    """The smallest perpendicular width (Å) of a dump frame's box, from its BOX BOUNDS
    lines (``lo hi`` or, triclinic, ``lo_bound hi_bound tilt``)."""
    try:
        b = [[float(w) for w in words] for words in bounds]
    except ValueError:
        raise located(path, f"frame {frame}: box bounds are not numbers") from None
    if all(len(row) == 3 for row in b):
        xy, xz, yz = b[0][2], b[1][2], b[2][2]
        xlo = b[0][0] - min(0.0, xy, xz, xy + xz)
        xhi = b[0][1] - max(0.0, xy, xz, xy + xz)
        ylo, yhi = b[1][0] - min(0.0, yz), b[1][1] - max(0.0, yz)
        cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, b[2][1] - b[2][0]]])
    else:
        cell = np.diag([row[1] - row[0] for row in b])
    return float(perpendicular_widths(cell).min())


def _periodicity(path, words) -> bool:
    flags = [w == "pp" for w in words[-3:]] if len(words) >= 3 else [True] * 3
    if all(flags):
        return True
    if not any(flags):
        return False
    raise located(path, f"mixed periodic boundaries {' '.join(words[-3:])} (a slab or a wire) "
                        "are not supported: an RDF there has no ideal-gas normalisation. "
                        "Rewrite the dump with all boundaries 'ff' (shrink-wrapped) to get "
                        "pair-distance densities p(r) of the atoms as they are, or with 'pp pp "
                        "pp' and a vacuum gap if the normalisation volume is to be the box's")


def _check_columns(path, cols):
    if not any(all(c in cols for c in conv) for conv in _COORDS):
        raise located(path, f"ITEM: ATOMS has no coordinate columns (x y z, xs ys zs, xu yu zu "
                            f"or xsu ysu zsu); it has: {' '.join(cols) or 'nothing'}")
    if "type" not in cols and "element" not in cols:
        raise located(path, "ITEM: ATOMS has neither a 'type' nor an 'element' column")
    forces = [c in cols for c in ("fx", "fy", "fz")]
    if any(forces) and not all(forces):
        raise located(path, "ITEM: ATOMS has only some of the force columns fx fy fz")


def masses_to_elements(path) -> dict[int, str]:
    """LAMMPS type → element from a data file's ``Masses`` section."""
    from ase.data import atomic_masses, chemical_symbols

    out: dict[int, str] = {}
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as exc:
        raise located(path, f"cannot read data file ({exc.strerror})") from None
    try:
        start = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["Masses"])
    except StopIteration:
        raise located(path, "no Masses section in the data file") from None
    for ln in lines[start + 1:]:
        body, _, comment = ln.partition("#")
        words = body.split()
        if not words:
            if out:
                break
            continue
        if len(words) < 2 or not words[0].isdigit():
            break
        sym = comment.split()[0] if comment.split() else ""
        if sym not in chemical_symbols[1:]:
            mass = float(words[1])
            z = int(np.argmin(np.abs(np.asarray(atomic_masses[1:]) - mass))) + 1
            sym = chemical_symbols[z]
        out[int(words[0])] = sym
    return out


class LammpsDumpTrajectory(Trajectory):
    format = "lammps-dump"

    def __init__(self, path, types=None, data=None, log=None, log_column="PotEng",
                 energy_column=None, timestep=None, units=None, **_):
        n_atoms, cols, rows, steps, self._periodic, self._widths = scan_dump(path)
        self._steps = steps
        self._units = unit_style(units)
        self._widths = [self._units.to_angstrom(w) for w in self._widths]
        self._timestep = timestep
        col = {c: i for i, c in enumerate(cols)}
        order = (np.argsort([_int(path, r[col["id"]], "an atom id", 0) for r in rows],
                            kind="stable") if "id" in col else np.arange(n_atoms))
        rows = [rows[i] for i in order]
        super().__init__(path, self._symbols(path, rows, col, types, data))
        if energy_column is not None and energy_column not in col:
            raise located(path, f"no dump column '{energy_column}' for the energy "
                                f"(has: {' '.join(cols)})")
        self._energy_column = energy_column
        self._energy_by_step = (potential_energy_by_step(log, log_column)
                                if log is not None else None)
        self._has_forces = "fx" in col
        self._mda_reader = None

    @staticmethod
    def _symbols(path, rows, col, types, data):
        if "type" in col:
            atom_types = [_int(path, r[col["type"]], "an atom type", 0) for r in rows]
        if types is not None:
            if "type" not in col:
                raise located(path, "--types given but the dump has no 'type' column")
            missing = sorted({t for t in atom_types if not 1 <= t <= len(types)})
            if missing:
                raise located(path, f"type(s) {', '.join(map(str, missing))} not covered by "
                                    f"--types {','.join(types)} ({len(types)} types)")
            return [types[t - 1] for t in atom_types]
        if "element" in col:
            return [r[col["element"]] for r in rows]
        if data is not None:
            mapping = masses_to_elements(data)
            missing = sorted({t for t in atom_types if t not in mapping})
            if missing:
                raise located(data, f"no mass for type(s) {', '.join(map(str, missing))}")
            return [mapping[t] for t in atom_types]
        found = sorted(set(atom_types))
        raise located(path, f"atom type(s) {', '.join(map(str, found))} have no element: give "
                            "--types (e.g. --types Ge,Te for type 1 = Ge), dump the 'element' "
                            "column, or give the data file")

    def _count_frames(self) -> int:
        return len(self._steps)

    def smallest_cell_width(self, indices) -> float | None:
        if not self._periodic or len(indices) == 0:
            return None
        return float(min(self._widths[i] for i in indices))

    def _reader(self):
        """One MDAnalysis reader per trajectory, kept open: it indexes the file once.

        Every access seeks to its frame and the frame's arrays are copied out at once, so
        several iterations over one trajectory may interleave.
        """
        if self._mda_reader is None:
            from MDAnalysis.coordinates.LAMMPS import DumpReader

            extra = [self._energy_column] if self._energy_column else None
            self._mda_reader = DumpReader(str(self.path), convert_units=False,
                                          additional_columns=extra, dt=1.0)
        return self._mda_reader

    def _iter_frames(self, indices):
        if len(indices) == 0:
            return
        reader = self._reader()
        for i in indices:
            try:
                ts = reader[i]
            except (ValueError, IndexError) as exc:
                raise located(self.path, f"frame {i} (step {self._steps[i]}): unreadable "
                                         f"atom line ({exc})") from None
            yield self._frame(i, ts)

    def _frame(self, i, ts) -> Frame:
        step = int(ts.data["step"])
        energy = None
        if self._energy_column:
            energy = float(np.sum(ts.data[self._energy_column], dtype=np.float64))
        elif self._energy_by_step is not None:
            energy = self._energy_by_step.get(step)
        u = self._units
        return Frame(
            index=i,
            positions=u.to_angstrom(np.asarray(ts.positions, dtype=np.float64)),
            cell=(u.to_angstrom(np.asarray(ts.triclinic_dimensions, dtype=np.float64))
                  if self._periodic else None),
            pbc=(self._periodic,) * 3,
            energy=None if energy is None else u.to_ev(energy),
            forces=(u.to_ev_per_angstrom(np.asarray(ts.forces, dtype=np.float64))
                    if self._has_forces else None),
            step=step,
            time=None if self._timestep is None else step * float(self._timestep),
        )


