"""The registry against the study's real Datasets/ layout, fetching from a local mirror of the
GitHub API, the estimates of what the files do not store, and LiPS20's tilted cells in
LAMMPS (tests/data holds real files from that layout; see its README)."""

from __future__ import annotations

import bz2
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import GETE_TEST

from egraff_lmp import datasets
from egraff_lmp.cli import main
from egraff_lmp.errors import EgraffError
from egraff_lmp.estimate import estimate_trajectory
from egraff_lmp.io import read_trajectory
from egraff_lmp.trajectory import Frame, MemoryTrajectory, minimum_image

DATA = Path(__file__).resolve().parent / "data"
ETHANOL_VAL = DATA / "Datasets" / "md17" / "ethanol" / "val" / "nequip_npz.npz"
LI2P2S6 = DATA / "Datasets" / "LiPS20" / "Li2P2S6" / "3000K" / "deepmd" / "Li16P16S48"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty HOME (so the dataset cache is empty) and no EGRAFF_LMP_DATA."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EGRAFF_LMP_DATA", raising=False)
    return tmp_path / "home"


def _listing(out):
    return {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}


@pytest.mark.parametrize("point_at", ["Datasets", "clone"])
def test_pointing_at_a_datasets_folder_makes_its_datasets_usable_by_name(home, monkeypatch,
                                                                          capsys, point_at):
    root = DATA / "Datasets" if point_at == "Datasets" else DATA  # a clone holds Datasets/
    monkeypatch.setenv("EGRAFF_LMP_DATA", str(root))
    assert main(["datasets"]) == 0
    rows = _listing(capsys.readouterr().out)
    assert rows["md17_ethanol"].endswith("-train +val -test")
    assert rows["lips20-Li2P2S6"].endswith("+test")
    assert rows["3bpa"].endswith("-train -val +test")
    assert rows["lips20-Li2S"].endswith("-test")
    # GeTe from the copies the package ships, byte for byte the repository's files
    assert rows["gete"].endswith("-train +val +test +test-val")
    assert "*" in rows["md17_ethanol"] and "*" not in rows["3bpa"].split()[4]

    assert main(["datasets", "show", "3bpa"]) == 0
    out = capsys.readouterr().out
    assert "split train (500 frames): MISSING" in out
    assert "split test (2138 frames): present" in out and "test_600K" in out

    val = datasets.read_split(datasets.get("md17_ethanol"), "val")
    assert (val.n_frames, val.n_atoms, val[0].cell) == (50, 9, None)
    mol = datasets.read_split(datasets.get("3bpa"), "test")  # stored in a 50 Å box
    assert mol.n_frames == 6 and mol[0].cell is None and mol[0].pbc == (False,) * 3
    lips = datasets.read_split(datasets.get("lips20-Li2P2S6"), "test")
    assert lips.n_frames == 3 and lips.species == ["Li", "P", "S"]
    assert lips[0].cell[2, 0] < -0.5 * lips[0].cell[0, 0]  # the strongly tilted cell


def test_a_missing_split_names_the_fetch_command_and_the_variable(home, monkeypatch):
    monkeypatch.setenv("EGRAFF_LMP_DATA", str(DATA))
    with pytest.raises(EgraffError, match="split train .* not found under .*datasets fetch "
                                          "md17_ethanol.*EGRAFF_LMP_DATA"):
        datasets.split_files(datasets.get("md17_ethanol"), "train")


def test_registry_names_groups_and_near_misses(home):
    with pytest.raises(EgraffError, match="'lips20' is 20 datasets: .*lips20-Li2P2S6"):
        datasets.get("lips20")
    with pytest.raises(EgraffError, match="did you mean 'md17_ethanol'"):
        datasets.get("md17_ethanl")
    assert len([d for d in datasets.REGISTRY.values() if d.group == "lips20"]) == 20
    assert datasets.get("lips20-Li2P2S6").species == ("Li", "P", "S")
    assert datasets.get("lips20-Li2S").species == ("Li", "S")


def test_a_bz2_copy_is_decompressed_into_the_cache(home, monkeypatch, tmp_path):
    root = tmp_path / "Datasets"
    packed = root / "Data_lips" / "data" / "train" / "nequip_npz.npz.bz2"
    packed.parent.mkdir(parents=True)
    packed.write_bytes(bz2.compress(ETHANOL_VAL.read_bytes()))
    monkeypatch.setenv("EGRAFF_LMP_DATA", str(root))
    (path,) = datasets.split_files(datasets.get("lips"), "train")
    assert path.is_relative_to(home) and path.read_bytes() == ETHANOL_VAL.read_bytes()


# -- fetch from a local mirror of GitHub's API ---------------------------------------------
FULL = "e4ee1e9" + "0" * 33
TREE = "f" * 40


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Mirror:
    """The two API calls fetch makes and raw file URLs, from dicts, on 127.0.0.1."""

    def __init__(self, files: dict[str, bytes], listed: dict[str, dict] | None = None):
        self.files = files
        self.listed = listed or {p: {"sha": _blob(b), "size": len(b)} for p, b in files.items()}
        self.requests = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                repo = "/repos/M3RG-IITD/MDBENCHGNN"
                if self.path == f"{repo}/commits/e4ee1e9":
                    body = json.dumps({"sha": FULL, "commit": {"tree": {"sha": TREE}}})
                elif self.path == f"{repo}/git/trees/{TREE}?recursive=1":
                    body = json.dumps({"truncated": False, "tree": [
                        {"path": p, "type": "blob", **e} for p, e in mirror.listed.items()]})
                else:
                    prefix = f"/M3RG-IITD/MDBENCHGNN/{FULL}/"
                    path = self.path[len(prefix):] if self.path.startswith(prefix) else None
                    if path not in mirror.files:
                        self.send_error(404)
                        return
                    body = mirror.files[path]
                body = body.encode() if isinstance(body, str) else body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(monkeypatch):
    made = []

    def make(files, listed=None):
        m = Mirror(files, listed)
        monkeypatch.setenv("EGRAFF_LMP_GITHUB_API", m.url)
        monkeypatch.setenv("EGRAFF_LMP_GITHUB_RAW", m.url)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def _lips20_files():
    out = {}
    for f in sorted(LI2P2S6.rglob("*")):
        if f.is_file():  # served as another composition, under the All_LiPS20/ alias
            rel = f.relative_to(LI2P2S6).as_posix()
            out[f"Datasets/All_LiPS20/Li7PS6/3000K/deepmd/Li28P4S24/{rel}"] = f.read_bytes()
    return out


def test_fetch_downloads_verified_files_where_the_registry_finds_them(home, mirror, capsys,
                                                                      monkeypatch):
    val = ETHANOL_VAL.read_bytes()
    m = mirror({"Datasets/md17/ethanol/val/nequip_npz.npz": val, **_lips20_files()})
    assert main(["datasets", "fetch", "md17_ethanol"]) == 0
    out = capsys.readouterr().out
    got = home / ".cache" / "egraff-lmp" / "datasets" / "md17" / "ethanol" / "val" / \
        "nequip_npz.npz"
    assert got.read_bytes() == val and f"downloaded and verified: {got}" in out
    assert "not in M3RG-IITD/MDBENCHGNN at e4ee1e9: Datasets/md17/ethanol/train" in out
    assert datasets.present_splits(datasets.get("md17_ethanol")) == {
        "train": False, "val": True, "test": False}
    n = len(m.requests)
    assert main(["datasets", "fetch", "md17_ethanol", "--split", "val"]) == 0
    assert "already here, verified" in capsys.readouterr().out
    assert len(m.requests) == n + 2  # the listing only: nothing downloaded again

    assert main(["datasets", "fetch", "lips20-Li7PS6"]) == 0  # a DeePMD directory
    traj = datasets.read_split(datasets.get("lips20-Li7PS6"), "test")
    assert traj.n_frames == 3 and "All_LiPS20" in str(traj.path)


def test_fetch_keeps_nothing_that_does_not_match_the_listing(home, mirror, capsys):
    val = ETHANOL_VAL.read_bytes()
    bad = val[:-1] + bytes([val[-1] ^ 1])
    mirror({"Datasets/md17/ethanol/val/nequip_npz.npz": bad},
           {"Datasets/md17/ethanol/val/nequip_npz.npz": {"sha": _blob(val), "size": len(val)}})
    assert main(["datasets", "fetch", "md17_ethanol", "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "nothing kept" in err and len(err.strip().splitlines()) == 1
    cache = home / ".cache" / "egraff-lmp" / "datasets"
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_fetch_refuses_a_listing_that_contradicts_the_pinned_blob_ids(home, mirror, capsys):
    other = b"not the study's file"
    mirror({"Datasets/md17/ethanol/val/nequip_npz.npz": other})  # listed as what it is
    assert main(["datasets", "fetch", "md17_ethanol", "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert "pinned as 5d5a8a31a7331237bcc5d6b8f041e04ad4f1e7f9" in err
    assert "refusing this listing" in err and len(err.strip().splitlines()) == 1


def test_fetch_offline_says_so_in_one_line(home, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("EGRAFF_LMP_GITHUB_API", f"http://127.0.0.1:{port}")
    assert main(["datasets", "fetch", "gete"]) == 2
    err = capsys.readouterr().err
    assert "looks offline" in err and "EGRAFF_LMP_DATA" in err
    assert len(err.strip().splitlines()) == 1


def test_the_pin_holds_the_blob_ids_of_the_files_shipped_here():
    from egraff_lmp.fetch import file_blob_id, pinned

    pin = pinned()
    assert file_blob_id(ETHANOL_VAL) == tuple(pin["Datasets/md17/ethanol/val/nequip_npz.npz"]
                                              .values())
    shipped = Path(datasets.locate("GeTe/data/test/nequip_npz.npz"))
    assert file_blob_id(shipped) == tuple(pin["Datasets/GeTe/data/test/nequip_npz.npz"]
                                          .values())


# -- estimates -----------------------------------------------------------------------------
def _harmonic_crystal(dt_fs, n_frames=300, temperature=300.0, seed=0):
    """Atoms on springs (k = 2 eV/Å²) to lattice sites in a 12 Å cube, integrated by
    velocity Verlet at 0.1 fs and saved every dt_fs; returns frames and the mean kinetic
    temperature of the saved frames (3N - 3 degrees of freedom)."""
    from ase import units
    from ase.data import atomic_masses, atomic_numbers

    rng = np.random.default_rng(seed)
    sites = np.stack(np.meshgrid(*[np.arange(0.0, 12.0, 3.0)] * 3), -1).reshape(-1, 3)
    n = len(sites)
    m = atomic_masses[atomic_numbers["Ar"]]
    k = 2.0
    x = sites + rng.normal(0, 0.05, (n, 3))
    v = rng.normal(0, np.sqrt(units.kB * temperature / m), (n, 3))
    v -= v.mean(0)
    h = 0.1 * units.fs
    every = round(dt_fs / 0.1)
    frames, kinetic = [], []
    f = -k * (x - sites)
    for step in range(n_frames * every):
        if step % every == 0:
            frames.append(Frame(len(frames), x % 12.0, np.eye(3) * 12.0, (True,) * 3,
                                energy=0.5 * k * ((x - sites) ** 2).sum(), forces=f.copy()))
            kinetic.append(0.5 * m * (v ** 2).sum())
        v += 0.5 * h * f / m
        x = x + h * v
        f = -k * (x - sites)
        v += 0.5 * h * f / m
    t = 2 * np.mean(kinetic[1:-1]) / ((3 * n - 3) * units.kB)
    return frames, ["Ar"] * n, t


def test_frame_spacing_and_temperature_are_recovered_from_a_known_trajectory():
    frames, symbols, t_true = _harmonic_crystal(0.7)
    e = estimate_trajectory(MemoryTrajectory(frames, symbols))  # wrapped positions
    assert e.contiguous and e.frame_spacing_fs == pytest.approx(0.7, rel=0.01)
    assert e.temperature_k == pytest.approx(t_true, rel=0.03)
    order = np.random.default_rng(1).permutation(len(frames))
    shuffled = estimate_trajectory(MemoryTrajectory([frames[i] for i in order], symbols))
    assert not shuffled.contiguous and shuffled.smoothness > 1.0


def test_the_gete_estimates_are_what_the_registry_says():
    e = estimate_trajectory(read_trajectory(GETE_TEST))
    d = datasets.get("gete")
    assert e.frame_spacing_fs == pytest.approx(d.frame_spacing_fs, abs=0.01)
    assert 900 < e.temperature_k < 1000 and e.smoothness < 0.1


def test_lips20_frames_are_not_read_as_a_trajectory(home, monkeypatch):
    monkeypatch.setenv("EGRAFF_LMP_DATA", str(DATA))
    traj = datasets.read_split(datasets.get("lips20-Li2P2S6"), "test")
    assert not estimate_trajectory(traj).contiguous
    assert datasets.get("lips20-Li2P2S6").frame_spacing_fs is None


# -- the tilted LiPS20 cell in LAMMPS --------------------------------------------------------
def test_a_strongly_tilted_cell_round_trips_through_lammps(tmp_path):
    """One Li2P2S6 frame: data file (cell reduced) -> LAMMPS run 0 with the plugin -> dump
    -> back in the reference's orientation: positions equal modulo the lattice, forces equal
    to the same model's through ASE on the original cell, to 1e-6."""
    from lj_artifact import lj_artifact
    from test_plugin import run_lmp

    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.io.lammps_write import from_lammps, needs_orientation, write_lammps_data
    from egraff_lmp.lammps.plugin import plugin_path

    ref = read_trajectory(LI2P2S6)
    frame = ref[0]
    assert needs_orientation(frame.cell)
    art = lj_artifact(tmp_path, epsilon=0.02, sigma=2.0, rc=5.0, elements=["Li", "P", "S"])
    v = np.random.default_rng(0).normal(0.0, 0.02, (ref.n_atoms, 3))  # Å/fs
    species = write_lammps_data(tmp_path / "start.data", frame, ref.symbols, velocities=v)
    box = (tmp_path / "start.data").read_text()
    lx = float(next(line for line in box.splitlines() if "xlo" in line).split()[1])
    xy, xz, yz = (float(v) for v in next(line for line in box.splitlines()
                                         if "xy xz yz" in line).split()[:3])
    assert max(abs(xy), abs(xz)) <= 0.5 * lx + 1e-9  # reduced: LAMMPS runs it efficiently
    for ranks in (1, 2):
        run_lmp(tmp_path, f"""units metal
atom_style atomic
boundary p p p
read_data start.data
plugin load {plugin_path()}
pair_style egraff {art}
pair_coeff * * {' '.join(species)}
dump d all custom 1 dump{ranks}.lammpstrj id type element x y z fx fy fz
dump_modify d sort id element {' '.join(species)} format float %.16g
dump v all custom 1 v{ranks}.dump id vx vy vz
dump_modify v sort id format float %.16g
run 0
""", np_=ranks)
        rows = (tmp_path / f"v{ranks}.dump").read_text().split("ITEM: ATOMS")[-1].splitlines()
        vel = np.array([[float(x) for x in r.split()[1:]] for r in rows[1:] if r.strip()])
        from egraff_lmp.io.lammps_write import prism

        back_v = vel / 1000.0 @ prism(frame.cell).rot_mat.T  # Å/ps -> Å/fs, rotated back
        assert np.abs(back_v - v).max() < 1e-9  # velocities rotated, never wrapped
        dumped = read_trajectory(tmp_path / f"dump{ranks}.lammpstrj", format="lammps-dump")
        back = from_lammps(dumped[0], frame.cell)
        np.testing.assert_allclose(back.cell, frame.cell)
        assert np.abs(minimum_image(back.positions - frame.positions, frame.cell)).max() < 1e-6
        atoms = frame.to_atoms(ref.symbols)
        atoms.calc = DeployedCalculator(art)
        want = atoms.get_forces()
        assert np.abs(want).max() > 0.1  # the model acts
        assert np.abs(back.forces - want).max() < 1e-6, ranks
