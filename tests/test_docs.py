"""The docs: README.md stays a front page (at most 10 KB, its links into docs/ resolve) and
the manual under docs/ builds strictly with MkDocs (a broken link or anchor, or a page left
out of the nav, fails the build)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata

import pytest
from conftest import ROOT

README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _mkdocs_build(root, site):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(root / "mkdocs.yml"), "-d", str(site)],
                          capture_output=True, text=True)


def test_readme_is_a_front_page_of_at_most_10_kb():
    size = len(README.read_bytes())
    assert size <= 10 * 1024, f"README.md is {size} bytes: move what is more into docs/"


def test_readme_links_resolve():
    text = README.read_text()
    links = [m for m in LINK.findall(text) if "://" not in m]
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README.md links to {link}: no such file"
        if anchor and target.suffix == ".md":
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
            assert anchor in slugs, f"README.md links to {link}: no such heading"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc (what MkDocs uses) gives a heading."""
    text = unicodedata.normalize("NFKD", heading.replace("`", ""))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_docs_build_strictly(tmp_path):
    build = _mkdocs_build(ROOT, tmp_path / "site")
    assert build.returncode == 0, build.stderr
    for page in ("index.html", "plugin/index.html", "results/gete/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


@pytest.mark.parametrize("breakage", ["a link to a missing page", "a link to a missing anchor",
                                      "a page left out of the nav"])
def test_a_broken_docs_tree_fails_the_strict_build(tmp_path, breakage):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    run = tmp_path / "docs" / "run.md"
    if breakage == "a link to a missing page":
        run.write_text(run.read_text() + "\nSee [there](no-such-page.md).\n")
    elif breakage == "a link to a missing anchor":
        run.write_text(run.read_text() + "\nSee [there](plugin.md#no-such-heading).\n")
    else:
        (tmp_path / "docs" / "results" / "new.md").write_text("# A new results page\n")
    build = _mkdocs_build(tmp_path, tmp_path / "site")
    assert build.returncode != 0, f"{breakage} passed the strict build"
