"""Validation of a deployed model: parity with the family's own calculator, and symmetry.

Tolerances: forces ≤ 1e-6 eV/Å and energies ≤ 1e-6 eV/atom in float64 models; 1e-4 in
float32 models, the forces' growing with their magnitude (:func:`force_tolerance`; see
:func:`failures` for the symmetry of the energy). Symmetry: rotating
the whole system (cell included), translating it, or permuting its atoms changes the energy
by no more than the tolerance and rotates/permutes the forces accordingly. Each check
returns its measured deviations; ``failures`` names those above tolerance.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

TOLERANCE = {"float64": 1e-6, "float32": 1e-4}
#: relative force tolerance: a float32 network's forces carry rounding ~ its eps (1.2e-7)
#: times the sum of the terms that cancel in them, so large forces (compressed or
#: unusual structures) deviate more in absolute terms; float64's is far below its 1e-6
RELATIVE = {"float64": 1e-10, "float32": 2e-5}


def tolerance(dtype: str) -> float:
    return TOLERANCE.get(dtype, 1e-4)


def force_tolerance(dtype: str, force_scale: float | None) -> float:
    """eV/Å: :func:`tolerance`, or :data:`RELATIVE` × the largest |F| component (eV/Å) of
    the structures compared where that is larger."""
    return max(tolerance(dtype), RELATIVE.get(dtype, 2e-5) * (force_scale or 0.0))


#: packing fraction of the covalent spheres in the synthetic cells: GeTe4's CPMD density
#: (32.3 Å³/atom) is 0.28 of its atoms' covalent volume; liquids and amorphous solids sit at
#: 0.25–0.35
PACKING = 0.28
#: no two synthetic atoms closer than this fraction of the sum of their covalent radii
MIN_BOND = 0.9
#: Å³ per atom at least: organic liquids and molecular crystals (acetylacetone: 11), whose
#: hydrogens' covalent spheres alone would pack them far too densely
MIN_VOLUME_PER_ATOM = 10.0


def volume_per_atom(type_names) -> float:
    """Å³ per atom of a synthetic cell of these elements: their mean covalent sphere
    volume (ASE's radii) over :data:`PACKING`, at least :data:`MIN_VOLUME_PER_ATOM`."""
    from ase.data import atomic_numbers, covalent_radii

    r = np.array([covalent_radii[atomic_numbers[s]] for s in type_names])
    return max(float(np.mean(4 / 3 * np.pi * r**3) / PACKING), MIN_VOLUME_PER_ATOM)


def random_configuration(type_names, r_max, seed=0, n_per_species=6, scale=1.0) -> Atoms:
    """Random atoms of the model's species in a triclinic cell at a condensed-matter
    density (:func:`volume_per_atom`, lengths × ``scale``), no pair closer than
    :data:`MIN_BOND` × the sum of their covalent radii: a structure a trained model has
    seen the like of (atoms closer than any bond give energies no model was fitted to,
    and float32 rounding of their huge forces fails every tolerance)."""
    from ase.data import atomic_numbers, covalent_radii

    rng = np.random.default_rng(seed)
    symbols = [s for s in type_names for _ in range(n_per_species)]
    n = len(symbols)
    length = (volume_per_atom(type_names) * n) ** (1 / 3) * scale
    cell = np.array([[length, 0, 0], [0.15 * length, length, 0], [-0.1 * length,
                                                                  0.2 * length, length]])
    cell *= (length**3 / abs(np.linalg.det(cell))) ** (1 / 3)  # the volume of the cube
    radii = np.array([covalent_radii[atomic_numbers[s]] for s in symbols])
    atoms = Atoms(symbols=symbols, cell=cell, pbc=True)
    pos: list[np.ndarray] = []
    tries = 0
    while len(pos) < n:
        tries += 1
        if tries > 200_000:
            raise RuntimeError(f"cannot place {n} atoms of {','.join(type_names)} "
                               f"{MIN_BOND} covalent bonds apart in {length**3:.0f} Å³")
        trial = rng.random(3) @ cell
        k = len(pos)
        if k:
            test = Atoms("H" * (k + 1), positions=pos + [trial], cell=cell, pbc=True)
            d = test.get_distances(k, range(k), mic=True)
            if (d < MIN_BOND * (radii[k] + radii[:k])).any():
                continue
        pos.append(trial)
    atoms.positions = np.array(pos)
    return atoms


def _ef(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def _atom_energies(calc, atoms):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = atoms.copy()
    atoms.calc = calc
    try:
        return atoms.get_potential_energies()
    except (PropertyNotImplementedError, NotImplementedError, KeyError):
        return None


def parity(calc, reference_calc, configurations) -> dict:
    """Max |ΔE|/atom (eV), max |Δε_i| of per-atom energies (eV; None when the reference
    has none) and max |ΔF| (eV/Å) between two calculators; ``force_scale``: the largest
    |F| component of the reference (eV/Å)."""
    de = df = scale = 0.0
    dei = 0.0
    for atoms in configurations:
        e1, f1 = _ef(calc, atoms)
        e2, f2 = _ef(reference_calc, atoms)
        de = max(de, abs(e1 - e2) / len(atoms))
        df = max(df, float(np.abs(f1 - f2).max()))
        scale = max(scale, float(np.abs(f2).max()))
        ei2 = _atom_energies(reference_calc, atoms)
        if ei2 is None or dei is None:
            dei = None
        else:
            dei = max(dei, float(np.abs(_atom_energies(calc, atoms) - ei2).max()))
    return {"energy_per_atom": de, "atom_energies": dei, "forces": df, "force_scale": scale}


def _rotation(seed):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def symmetry(calc, atoms, seed=0) -> dict:
    """Energy change (eV) and force error (eV/Å) under rotation, translation, permutation;
    each with ``force_scale``, the largest |F| component (eV/Å)."""
    e0, f0 = _ef(calc, atoms)
    out = {}
    scale = float(np.abs(f0).max())
    rot = _rotation(seed)
    a = atoms.copy()
    a.set_cell(atoms.cell[:] @ rot.T, scale_atoms=False)
    a.positions = atoms.positions @ rot.T
    e, f = _ef(calc, a)
    out["rotation"] = {"energy": abs(e - e0), "forces": float(np.abs(f - f0 @ rot.T).max())}
    a = atoms.copy()
    a.positions = atoms.positions + np.array([0.37, -1.21, 2.9])
    e, f = _ef(calc, a)
    out["translation"] = {"energy": abs(e - e0), "forces": float(np.abs(f - f0).max())}
    perm = np.random.default_rng(seed + 1).permutation(len(atoms))
    e, f = _ef(calc, atoms[perm])
    out["permutation"] = {"energy": abs(e - e0), "forces": float(np.abs(f - f0[perm]).max())}
    for r in out.values():
        r["force_scale"] = scale
    return out


def staging(artifact, calc, atoms) -> dict:
    """Deviation (eV, eV/Å) of the staged path, emulated on two sub-domains with a ghost
    shell of r_max and features exchanged between layers, from the one-call evaluation;
    ghost atoms per domain."""
    from .stages import deviation, emulate

    result = emulate(artifact, atoms, grid=(2, 1, 1))
    return {**deviation(result, calc, atoms), "domains": 2, "ghosts": result.ghosts,
            "box_length": float(atoms.cell.lengths().max())}


def failures(report: dict, dtype: str, n_atoms: int) -> list[str]:
    """Human-readable list of the checks above tolerance.

    Symmetry of the energy: ≤ 1e-6 eV in float64; in float32, whose rounding grows with
    the number of atoms summed, ≤ 1e-4 eV per atom. Staging (the same model evaluated on
    two sub-domains, positions wrapped into the cell) in float32: forces within 1e-4 eV/Å per
10 Å of the largest cell length (position rounding grows with the coordinates).
    """
    tol = tolerance(dtype)
    e_tol = tol if dtype == "float64" else tol * n_atoms
    bad = []
    p = report.get("parity")
    if p is not None:
        f_tol = force_tolerance(dtype, p.get("force_scale"))
        if p["forces"] > f_tol:
            bad.append(f"parity: forces differ by {p['forces']:.3g} eV/Å (tolerance "
                       f"{f_tol:.3g}{_scaled(p, dtype)})")
        if p.get("atom_energies") is not None and p["atom_energies"] > tol:
            bad.append(f"parity: per-atom energies differ by {p['atom_energies']:.3g} eV "
                       f"(tolerance {tol:g})")
        # In float32 the total energy (|E| ~ 4e4 eV for GeTe) carries summation rounding
        # of ~1e-4 eV/atom in either code; the per-atom energies are then the test.
        if p["energy_per_atom"] > tol and (dtype == "float64" or p.get("atom_energies")
                                           is None):
            bad.append(f"parity: energy differs by {p['energy_per_atom']:.3g} eV/atom "
                       f"(tolerance {tol:g})")
    st = report.get("staging")
    if st is not None:
        # the sub-domains see positions wrapped into the cell, as LAMMPS does: in float32
        # their rounding (an ulp grows with |x|: 3.8e-6 Å at 50 Å) moves the forces by
        # ~ulp x stiffness, so the force tolerance grows with the box: 1e-4 eV/Å per 10 Å
        f_tol = tol if dtype == "float64" else max(tol, tol * st.get("box_length", 0) / 10)
        if st["forces"] > f_tol or st["atom_energies"] > tol or st["energy"] > e_tol \
                or st["virial"] > max(e_tol, f_tol * n_atoms):
            bad.append(f"staging (two sub-domains vs one call): energy {st['energy']:.3g} eV, "
                       f"per-atom energies {st['atom_energies']:.3g} eV, forces "
                       f"{st['forces']:.3g} eV/Å, virial {st['virial']:.3g} eV "
                       f"(tolerance {tol:g}, forces {f_tol:.3g})")
    for name, r in report.get("symmetry", {}).items():
        f_tol = force_tolerance(dtype, r.get("force_scale"))
        if r["energy"] > e_tol or r["forces"] > f_tol:
            bad.append(f"symmetry ({name}): energy changes by {r['energy']:.3g} eV, forces "
                       f"by {r['forces']:.3g} eV/Å (tolerance {e_tol:.3g} eV, "
                       f"{f_tol:.3g} eV/Å{_scaled(r, dtype)})")
    return bad


def _scaled(result: dict, dtype: str) -> str:
    scale = result.get("force_scale")
    if scale is None or force_tolerance(dtype, scale) <= tolerance(dtype):
        return ""
    return f": {RELATIVE.get(dtype, 2e-5):g} of |F| up to {scale:.3g} eV/Å"
