"""The one trajectory type every reader produces and every analysis consumes.

Conventions (LAMMPS ``units metal``): positions and cells in Å, energies in eV, forces in
eV/Å, time in fs. A cell is a 3×3 array whose *rows* are the lattice vectors (ASE's
convention, triclinic allowed); ``cell is None`` means a non-periodic system (a molecule).
Element symbols, not type numbers, name the atoms.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import EgraffError, located


@dataclass
class Frame:
    """One configuration.

    Attributes
    ----------
    index : position of the frame in its file (0-based).
    positions : (n, 3) float64, Å.
    cell : (3, 3) float64 with lattice vectors as rows, Å; None when not periodic.
    pbc : three booleans; all False when ``cell`` is None.
    energy : potential energy, eV, or None.
    forces : (n, 3) float64, eV/Å, or None.
    step : MD step number when the file stores one (LAMMPS dumps), else None.
    time : time in fs when known, else None.
    """

    index: int
    positions: np.ndarray
    cell: np.ndarray | None
    pbc: tuple[bool, bool, bool]
    energy: float | None = None
    forces: np.ndarray | None = None
    step: int | None = None
    time: float | None = None

    def to_atoms(self, symbols):
        """This frame as ``ase.Atoms`` with the given element symbols: positions (Å), the
        cell and its periodicity (none for a molecule)."""
        from ase import Atoms

        return Atoms(symbols=list(symbols), positions=self.positions, cell=self.cell,
                     pbc=self.pbc if self.cell is not None else False)

    @property
    def volume(self) -> float | None:
        """Cell volume in Å³, or None for a non-periodic frame."""
        if self.cell is None:
            return None
        return float(abs(np.linalg.det(self.cell)))


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å): V / |b × c|, etc."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    crosses = np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]])
    return volume / np.linalg.norm(crosses, axis=1)


def minimum_image(d: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Displacements ``d`` (n×3, Å) reduced to their shortest periodic image in ``cell``
    (rows are lattice vectors; triclinic allowed); unchanged when ``cell`` is None."""
    if cell is None:
        return d
    frac = np.linalg.solve(cell.T, d.T).T
    return (frac - np.round(frac)) @ cell


def check_symbols(path, symbols) -> list[str]:
    """Return ``symbols`` as strings, refusing anything that is not an element symbol."""
    from ase.data import atomic_numbers

    symbols = [str(s) for s in symbols]
    unknown = sorted({s for s in symbols if s not in atomic_numbers or s == "X"})
    if unknown:
        raise located(path, f"unknown element symbol(s): {', '.join(unknown)}")
    return symbols


class Trajectory:
    """A sequence of frames of one system, read lazily from a file.

    Subclasses (the readers) set ``path``, ``format``, ``symbols`` and implement
    :meth:`_iter_frames` and :meth:`_count_frames`. Iterating never holds more than one
    frame in memory, so memory does not grow with the number of frames.
    """

    format = "?"

    def __init__(self, path, symbols):
        self.path = path
        self.symbols = check_symbols(path, symbols)
        self._n_frames: int | None = None

    # -- the reader interface -------------------------------------------------
    def _count_frames(self) -> int:
        raise NotImplementedError

    def _iter_frames(self, indices: range) -> Iterator[Frame]:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------
    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    @property
    def n_frames(self) -> int:
        if self._n_frames is None:
            self._n_frames = self._count_frames()
        return self._n_frames

    def __len__(self) -> int:
        return self.n_frames

    @property
    def species(self) -> list[str]:
        """Distinct element symbols, sorted alphabetically."""
        return sorted(set(self.symbols))

    def smallest_cell_width(self, indices) -> float | None:
        """The smallest perpendicular cell width (Å) over the frames ``indices`` when the
        format knows it without reading them (LAMMPS dumps: from the pre-scan), else None."""
        return None

    def frame_range(self, start=None, stop=None, step=None) -> range:
        """The frame indices selected by a Python slice ``start:stop:step``."""
        if step is not None and step <= 0:
            raise EgraffError(f"step must be a positive integer, got {step}")
        return range(*slice(start, stop, step).indices(self.n_frames))

    def frames(self, start=None, stop=None, step=None) -> Iterator[Frame]:
        """Iterate over the selected frames, checking each one as it is read."""
        for frame in self._iter_frames(self.frame_range(start, stop, step)):
            self._check(frame)
            yield frame

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def __getitem__(self, index: int) -> Frame:
        n = self.n_frames
        if not -n <= index < n:
            raise IndexError(f"frame {index} out of range for {n} frames")
        return next(self.frames(index % n, index % n + 1))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path} format={self.format} "
                f"atoms={self.n_atoms} species={','.join(self.species)}>")

    def _check(self, frame: Frame) -> None:
        where = f"frame {frame.index}"
        if frame.positions.shape != (self.n_atoms, 3):
            raise located(self.path, f"{where} has {len(frame.positions)} atoms, "
                                     f"expected {self.n_atoms} (atom count changed)")
        if not np.all(np.isfinite(frame.positions)):
            raise located(self.path, f"{where} has non-finite (NaN/inf) coordinates")
        if frame.cell is not None and not np.all(np.isfinite(frame.cell)):
            raise located(self.path, f"{where} has a non-finite cell")
        if frame.cell is not None and frame.volume < 1e-12:
            raise located(self.path, f"{where} has a cell of zero volume")
        if frame.forces is not None:
            if frame.forces.shape != (self.n_atoms, 3):
                raise located(self.path, f"{where} has forces of shape {frame.forces.shape}")
            if not np.all(np.isfinite(frame.forces)):
                raise located(self.path, f"{where} has non-finite (NaN/inf) forces")
        if frame.energy is not None and not math.isfinite(frame.energy):
            raise located(self.path, f"{where} has a non-finite energy")


class ConcatTrajectory(Trajectory):
    """Several trajectories of one system read as one, in the order given (e.g. the test
    split followed by the validation split of one contiguous AIMD run). Frame ``index``
    counts across the parts; ``time`` is left to the parts."""

    format = "concat"

    def __init__(self, parts: list[Trajectory]):
        if not parts:
            raise EgraffError("no trajectories to join")
        for p in parts[1:]:
            if p.symbols != parts[0].symbols:
                raise located(p.path, f"has other atoms than {parts[0].path}: cannot be read "
                                      "as its continuation")
        super().__init__(" + ".join(str(p.path) for p in parts), parts[0].symbols)
        self.parts = parts

    def _count_frames(self) -> int:
        return sum(p.n_frames for p in self.parts)

    def _iter_frames(self, indices: range) -> Iterator[Frame]:
        offsets = np.cumsum([0] + [p.n_frames for p in self.parts])
        wanted = list(indices)
        for k, part in enumerate(self.parts):
            lo, hi = offsets[k], offsets[k + 1]
            local = [i - lo for i in wanted if lo <= i < hi]
            if not local:
                continue
            frames = part.frames(local[0], local[-1] + 1, indices.step)
            for fr in frames:
                fr.index = int(fr.index + lo)
                yield fr


class MoleculeTrajectory(Trajectory):
    """A molecule stored in a periodic box (e.g. the study's 3BPA and acetylacetone files:
    a 50 Å box with pbc True) read as what it is: frames without a cell. Refuses a frame
    whose atoms are not whole (spread over more than half the box)."""

    format = "molecule"

    def __init__(self, inner: Trajectory):
        super().__init__(inner.path, inner.symbols)
        self.inner = inner

    def _count_frames(self) -> int:
        return self.inner.n_frames

    def _iter_frames(self, indices: range) -> Iterator[Frame]:
        if not len(indices):
            return
        for fr in self.inner.frames(indices.start, indices.stop, indices.step):
            if fr.cell is not None:
                extent = fr.positions.max(axis=0) - fr.positions.min(axis=0)
                width = perpendicular_widths(fr.cell)
                if np.any(extent > 0.5 * width):
                    raise located(self.path, f"frame {fr.index}: the molecule spans "
                                             f"{extent.max():.1f} Å of a {width.min():.1f} Å "
                                             "box (not whole): cannot read it as a molecule")
            fr.cell, fr.pbc = None, (False, False, False)
            yield fr


def as_molecule(traj: Trajectory) -> Trajectory:
    """``traj`` with its frames read as a molecule (no cell), unchanged if already so."""
    return traj if isinstance(traj, MoleculeTrajectory) else MoleculeTrajectory(traj)


class TransformedTrajectory(Trajectory):
    """``inner``'s frames passed through ``fn`` (Frame -> Frame), e.g. a LAMMPS run's frames
    rotated back into the reference's orientation."""

    def __init__(self, inner: Trajectory, fn):
        super().__init__(inner.path, inner.symbols)
        self.format = inner.format
        self.inner, self.fn = inner, fn

    def _count_frames(self) -> int:
        return self.inner.n_frames

    def smallest_cell_width(self, indices) -> float | None:
        return self.inner.smallest_cell_width(indices)

    def _iter_frames(self, indices: range) -> Iterator[Frame]:
        if len(indices):
            for fr in self.inner.frames(indices.start, indices.stop, indices.step):
                yield self.fn(fr)


class MemoryTrajectory(Trajectory):
    """Frames already in memory, as a trajectory (MDAnalysis' MemoryReader habit): a list
    of :class:`Frame`, or with :meth:`from_positions` an (F, n, 3) array of positions (Å)
    and one cell (None: a molecule)."""

    format = "memory"

    def __init__(self, frames: list[Frame], symbols, path="<memory>"):
        super().__init__(path, symbols)
        self._frames = list(frames)

    @classmethod
    def from_positions(cls, positions, symbols, cell=None) -> MemoryTrajectory:
        periodic = cell is not None
        return cls([Frame(i, np.asarray(x, dtype=np.float64), cell, (periodic,) * 3)
                    for i, x in enumerate(positions)], symbols)

    def _count_frames(self) -> int:
        return len(self._frames)

    def _iter_frames(self, indices: range) -> Iterator[Frame]:
        for i in indices:
            yield self._frames[i]
