"""Transport, vibrations, decorrelation and results pages against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_npz

from egraff_lmp.analysis import MSD, VDOS
from egraff_lmp.errors import EgraffError
from egraff_lmp.evaluate.collect import decorrelation_time
from egraff_lmp.evaluate.report import RESULTS_MARK, write_results_page
from egraff_lmp.io import read_trajectory

L = 10.0  # Å, cubic cell


def _trajectory(tmp_path, positions, numbers=(1, 8)):
    pos = np.asarray(positions, dtype=float)
    return read_trajectory(write_npz(tmp_path / "t.npz", pos, list(numbers),
                                     cell=np.eye(3) * L))


def test_msd_of_atoms_in_uniform_motion_is_v2_t2_and_its_diffusivity_the_fit(tmp_path):
    """Two atoms moving at constant velocities, wrapped into the cell as they cross it:
    MSD(τ) = |v|² τ² exactly (unwrapping by the minimum image), and D is the slope of a
    straight line fitted over the second half of the lags: for y = v²τ² on evenly spaced
    τ in [a, b] that slope is v²(a + b), so D = v²(a + b)/6."""
    dt_fs, n = 2.0, 41
    v = np.array([[0.3, 0.0, 0.0], [0.0, 0.1, -0.2]])  # Å per frame: 0.15 and ~0.11 Å/fs
    t = np.arange(n)[:, None, None]
    pos = (np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]) + t * v) % L  # crosses the cell
    res = MSD(_trajectory(tmp_path, pos), dt_fs).run().results
    lags = np.arange(n // 2 + 1)
    np.testing.assert_allclose(res.lagtimes, lags * dt_fs)
    v2 = np.sum(v ** 2, axis=1) / dt_fs ** 2  # Å²/fs²
    np.testing.assert_allclose(res.msd["H"], v2[0] * (lags * dt_fs) ** 2, rtol=1e-10)
    np.testing.assert_allclose(res.msd["O"], v2[1] * (lags * dt_fs) ** 2, rtol=1e-10)
    half = lags[lags >= len(lags) // 2] * dt_fs / 1000.0  # ps
    a, b = half[0], half[-1]
    for s, vv in (("H", v2[0]), ("O", v2[1])):
        expected = vv * 1e6 * (a + b) / 6.0  # v² in Å²/ps²
        assert res.diffusivity[s] == pytest.approx(expected, rel=1e-9)


def test_msd_of_atoms_at_rest_is_zero(tmp_path):
    pos = np.tile([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]], (10, 1, 1))
    res = MSD(_trajectory(tmp_path, pos), 1.0).run().results
    assert np.all(res.msd["total"] == 0) and res.diffusivity["total"] == pytest.approx(0)


@pytest.mark.parametrize("f_thz", [10.0, 27.5])
def test_vdos_of_a_harmonic_oscillator_peaks_at_its_frequency(tmp_path, f_thz):
    """x(t) = x0 + A sin(2π f t), sampled every 1 fs for 2 ps: the VDOS peaks within one
    frequency bin (0.5 THz) of f and has unit area; a second atom at rest adds nothing."""
    dt_fs, n = 1.0, 2001
    t = np.arange(n) * dt_fs * 1e-15
    pos = np.zeros((n, 2, 3)) + [[3.0, 3.0, 3.0], [7.0, 7.0, 7.0]]
    pos[:, 0, 0] += 0.1 * np.sin(2 * np.pi * f_thz * 1e12 * t)
    res = VDOS(_trajectory(tmp_path, pos), dt_fs).run().results
    f, g = res.frequency, res.vdos["H"]
    df = f[1] - f[0]
    assert abs(f[np.argmax(g)] - f_thz) <= df
    assert g.sum() * df == pytest.approx(1.0)
    assert np.all(res.vdos["O"] == 0)
    with pytest.raises(EgraffError, match="at least 5 frames"):
        VDOS(_trajectory(tmp_path, pos[:4]), dt_fs).run()


def test_decorrelation_time_is_the_first_time_fv_exceeds_the_threshold():
    assert decorrelation_time([0.1, 0.3, 0.5, 0.6, 0.4, 0.7], 2.5, 0.5) == 7.5
    assert decorrelation_time([0.1, 0.2], 1.0, 0.5) is None
    assert decorrelation_time([0.9], 1.0, 0.5) == 0.0
    assert decorrelation_time(None, 1.0, 0.5) is None


REPORT = """# title

intro

## Table 1: errors

| | a | b |
|---|---|---|
| x | **1** | *2* |

## Table 2: structure

text

## Stability

not spliced
"""


def test_a_results_page_is_written_whole_from_the_report(tmp_path):
    rep = tmp_path / "report.md"
    rep.write_text(REPORT)
    page = tmp_path / "docs" / "results" / "x.md"
    write_results_page(rep, page, "egraff-lmp evaluate c.yaml -o out --results x.md")
    text = page.read_text()
    first, title = text.splitlines()[:2]
    assert first.startswith(RESULTS_MARK) and first.endswith("-->")
    assert title == "# title"
    assert "\nintro\n" in text and "`egraff-lmp evaluate c.yaml -o out --results x.md`" in text
    assert text.endswith("## Table 1: errors\n\n| | a | b |\n|---|---|---|\n"
                         "| x | **1** | *2* |\n\n## Table 2: structure\n\ntext\n")
    assert "Stability" not in text and "not spliced" not in text
    # again, from another report: the page is replaced whole, nothing of the old one stays
    rep.write_text(REPORT.replace("# title", "# other").replace("**1**", "**3**"))
    write_results_page(rep, page, "egraff-lmp evaluate c.yaml -o out --results x.md")
    again = page.read_text()
    assert again.splitlines()[1] == "# other" and "**3**" in again and "**1**" not in again
    assert again.count(RESULTS_MARK) == 1 and again.count("## Table 1") == 1


def test_a_results_page_never_overwrites_a_page_it_did_not_write(tmp_path):
    rep = tmp_path / "report.md"
    rep.write_text(REPORT)
    readme = tmp_path / "README.md"
    readme.write_text("# a hand-written page\n")
    with pytest.raises(EgraffError, match="not a results page"):
        write_results_page(rep, readme, "cmd")
    assert readme.read_text() == "# a hand-written page\n"
    with pytest.raises(EgraffError, match="is a directory"):
        write_results_page(rep, tmp_path, "cmd")
    (tmp_path / "empty.md").write_text("# no tables\n")
    with pytest.raises(EgraffError, match="no tables"):
        write_results_page(tmp_path / "empty.md", tmp_path / "new.md", "cmd")
    assert not (tmp_path / "new.md").exists()


def test_the_shipped_results_pages_are_results_pages():
    """The pages moved from the README carry the mark, so ``--results`` may rewrite them."""
    from conftest import ROOT

    for name in ("gete", "tasks"):
        text = (ROOT / "docs" / "results" / f"{name}.md").read_text()
        assert text.startswith(RESULTS_MARK) and text.splitlines()[1].startswith("# ")
        for table in ("## Table 1", "## Table 2", "## Table 3", "## Table 4",
                      "## Beyond the study"):
            assert table in text, (name, table)
