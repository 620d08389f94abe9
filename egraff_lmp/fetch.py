"""Download a dataset's files from the study's code repository, verifying every byte.

Source: GitHub, repository M3RG-IITD/MDBENCHGNN at commit e4ee1e9, folder ``Datasets/``.
The commit's tree listing (``GET /repos/{repo}/git/trees/{tree}?recursive=1``) gives each
file's git blob id and size; each download is checked against both (the blob id is
sha1 of ``b"blob <size>\\0" + content``, what ``git hash-object`` prints) before it is moved
into place, so nothing unverified is ever kept. The listing itself is checked against the
blob ids pinned in ``egraff_lmp/data/mdbenchgnn-e4ee1e9.json`` (the files that were at hand
byte for byte when this was written): a listing that disagrees with the pin is refused.

Files go to ``~/.cache/egraff-lmp/datasets`` (or ``--dest``) at their ``Datasets/`` paths, so
the registry finds them. ``EGRAFF_LMP_GITHUB_API`` and ``EGRAFF_LMP_GITHUB_RAW`` point at
another server with the same API (a mirror; the tests use a local one).

The Zenodo record 10678029 named by the paper is not used: its archive names and layout
could not be read from here, so its files could not be mapped onto the registry or verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import datasets
from .errors import EgraffError
from .files import atomic_path

API = "https://api.github.com"
RAW = "https://raw.githubusercontent.com"
PIN = Path(__file__).resolve().parent / "data" / "mdbenchgnn-e4ee1e9.json"


@dataclass
class FetchResult:
    """What ``fetch`` did: files downloaded, files already present and verified, and files
    (``Datasets/`` paths) the repository does not have at the commit."""

    downloaded: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)


def blob_id(data: bytes) -> str:
    """git's blob id of ``data`` (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_id(path: Path) -> tuple[str, int]:
    size = path.stat().st_size
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), size


def pinned() -> dict:
    return json.loads(PIN.read_text())["files"]


def _urls():
    return (os.environ.get("EGRAFF_LMP_GITHUB_API", API).rstrip("/"),
            os.environ.get("EGRAFF_LMP_GITHUB_RAW", RAW).rstrip("/"))


def _get(url: str, timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "egraff-lmp",
                                               "Accept": "application/vnd.github+json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - http(s) only
        return r.read()


def tree_listing(timeout: float = 20.0) -> tuple[str, dict]:
    """(full commit id, {path: {"sha", "size"}}) of the repository at the pinned commit,
    checked against the pin."""
    api, _ = _urls()
    repo, commit = datasets.REPOSITORY, datasets.COMMIT
    try:
        info = json.loads(_get(f"{api}/repos/{repo}/commits/{commit}", timeout))
        full, tree = info["sha"], info["commit"]["tree"]["sha"]
        listing = json.loads(_get(f"{api}/repos/{repo}/git/trees/{tree}?recursive=1",
                                  timeout))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EgraffError(f"cannot reach {api} for {repo} at {commit}: {reason}; this machine "
                          "looks offline: copy the study's Datasets/ folder here and set "
                          "EGRAFF_LMP_DATA to it") from None
    except (KeyError, ValueError) as exc:
        raise EgraffError(f"{api}: unexpected answer for {repo} at {commit} ({exc})") from None
    if listing.get("truncated"):
        raise EgraffError(f"{api}: the tree listing of {repo} at {commit} is truncated")
    files = {e["path"]: {"sha": e["sha"], "size": int(e.get("size", -1))}
             for e in listing.get("tree", []) if e.get("type") == "blob"}
    for path, pin in pinned().items():
        if path in files and files[path] != pin:
            raise EgraffError(f"{api}: {path} is listed as blob {files[path]['sha']} "
                              f"({files[path]['size']} bytes) but pinned as {pin['sha']} "
                              f"({pin['size']} bytes): refusing this listing")
    return full, files


def wanted_files(ds: datasets.Dataset, splits, listing: dict) -> tuple[list[str], list[str]]:
    """(repository paths to download, registry paths the repository does not have)."""
    want, absent = [], []
    for split in splits:
        if split not in ds.splits:
            raise EgraffError(f"dataset {ds.name} has no split '{split}' (it has "
                              f"{', '.join(ds.splits)})")
        for rel in ds.splits[split]:
            found = None
            for cand in datasets.alternatives(rel):
                for path in (f"Datasets/{cand}", f"Datasets/{cand}.bz2"):
                    if path in listing:
                        found = [path]
                        break
                inside = [p for p in listing if p.startswith(f"Datasets/{cand}/")]
                if found or inside:
                    found = found or inside
                    break
            if found:
                want += [p for p in found if p not in want]
            else:
                absent.append(rel)
    return want, absent


def fetch(name: str, dest: Path | None = None, splits=None, timeout: float = 20.0,
          log=print) -> FetchResult:
    """Download the files of dataset ``name`` (all its splits, or ``splits``) into ``dest``
    (default: the cache), verified by blob id and size; files already there and verified
    are kept. Returns a :class:`FetchResult`."""
    ds = datasets.get(name)
    dest = Path(dest) if dest else datasets.cache_dir()
    full, listing = tree_listing(timeout)
    want, absent = wanted_files(ds, splits or list(ds.splits), listing)
    result = FetchResult(absent=absent)
    _, raw = _urls()
    for path in want:
        entry = listing[path]
        target = dest / path[len("Datasets/"):]
        if target.is_file() and file_blob_id(target) == (entry["sha"], entry["size"]):
            result.present.append(target)
            continue
        url = f"{raw}/{datasets.REPOSITORY}/{full}/{urllib.request.quote(path)}"
        log(f"downloading {path} ({entry['size'] / 1e6:.1f} MB)")
        target.parent.mkdir(parents=True, exist_ok=True)
        h, size = hashlib.sha1(b"blob %d\0" % entry["size"]), 0
        head = b""
        try:
            with atomic_path(target) as tmp:
                with urllib.request.urlopen(url, timeout=timeout) as r, \
                        open(tmp, "wb") as fh:  # noqa: S310
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        head = head or chunk[:64]
                        h.update(chunk)
                        size += len(chunk)
                        fh.write(chunk)
                if (h.hexdigest(), size) != (entry["sha"], entry["size"]):
                    lfs = " (a Git LFS pointer)" if head.startswith(b"version https://git-lfs") \
                        else ""
                    raise EgraffError(f"{path}: downloaded {size} bytes with blob id "
                                      f"{h.hexdigest()}{lfs}, the repository lists "
                                      f"{entry['size']} bytes, {entry['sha']}: nothing kept")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise EgraffError(f"download of {path} from {url} failed: "
                              f"{getattr(exc, 'reason', exc)}; nothing kept") from None
        result.downloaded.append(target)
    return result
