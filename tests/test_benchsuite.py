"""The benchmark suite (``labctl bench``): a smoke run writes its report and figures; the README
figures table is generated from bench/RESULTS.md and must match the README's block."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.benchsuite.common import Headline, Section
from labctl.benchsuite.readme import (
    README_END,
    README_START,
    ResultsFormatError,
    between,
    readme_block,
    readme_block_from,
)
from labctl.benchsuite.suite import HEADLINE_END, HEADLINE_START, SIZES, render
from labctl.benchsuite.training import method_available
from labctl.cli import main
from labctl.exit_codes import EXIT_BAD_INPUT, EXIT_OK

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_smoke_writes_markdown_and_pngs(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--smoke", "--out", str(out)]) == EXIT_OK
    text = (out / "RESULTS.md").read_text(encoding="utf-8")
    for title in (
        "Estimator variance vs the Cramér–Rao bound",
        "Parallel vs sequential HGE",
        "Device-seconds per gradient at equal error",
        "Per-gate training",
        "Simulator speed and demodulation throughput",
    ):
        assert f"## {title}" in text
    assert "- command: `labctl bench --smoke --out" in text
    assert "- commit: `" in text and "nproc" in text
    table = between(text, HEADLINE_START, HEADLINE_END)
    assert table is not None and "HGE variance / CRB, white" in table
    for name in ("crb", "parallel_vs_sequential", "gradient_cost", "training", "speed"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"(figures/{name}.png)" in text
    # baselines that the installed schema does not accept are skipped, and say so
    for method in ("finite_difference", "spsa", "genetic"):
        if not method_available(method)[0]:
            assert f"method not available: {method}" in text
    # the README block is generated from this very file
    block = readme_block_from(out / "RESULTS.md")
    assert block.startswith(README_START) and block.endswith(README_END)
    assert table in block


PART_TABLES = {
    # section title (or its start): the header of (one of) its tables, as printed
    "Estimator variance vs the Cramér–Rao bound": "| noise | method | var/bound (mean) |",
    "Parallel vs sequential HGE": "| Δf (Hz) | points | slope par/seq |",
    "Device-seconds per gradient at equal error": "| N | method | device-s/gradient at 1 nA/V |",
    "Per-gate training": "| device | gate | method |",
    "Simulator speed and demodulation throughput": "| device model | × real time |",
    "Headline figures": "| figure | measured | goal / published | met |",
}


@pytest.mark.slow
def test_bench_quick_cli_prints_every_table_and_writes_the_markdown(tmp_path: Path) -> None:
    """``labctl bench --quick`` as CI runs it: a subprocess, every part's table on stdout.

    The run time (a few minutes on 2 cores) is measured in the benchmark notes, not asserted.
    """
    out = tmp_path / "quick"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from labctl.cli import main; sys.exit(main(sys.argv[1:]))",
            "bench",
            "--quick",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    text = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "- sizes: `quick`" in text
    for title, header in PART_TABLES.items():
        assert f"## {title}" in done.stdout, title
        assert f"## {title}" in text, title
        printed = done.stdout.split(f"## {title}", 1)[1]
        assert header in printed, title
        assert header in text, title
    table = between(text, HEADLINE_START, HEADLINE_END)
    assert table is not None
    for name in ("crb", "parallel_vs_sequential", "gradient_cost", "training", "speed"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {out / 'RESULTS.md'}" in done.stdout


def _results_text() -> str:
    section = Section("x", "A part", lines=["body"], figures=["a.png"])
    section.headline = [
        Headline("HGE variance / CRB, white", "1.01", "≤ 1.05", True),
        Headline("FD reported / measured", "0.20", "0.75–1.25", False),
    ]
    return render([section], SIZES["smoke"], "labctl bench --full --out bench", "abc123", 5.0)


def test_readme_block_from_results() -> None:
    text = _results_text()
    block = readme_block(text)
    lines = block.splitlines()
    assert lines[0] == README_START and lines[-1] == README_END
    assert "| HGE variance / CRB, white | 1.01 | ≤ 1.05 | yes |" in block
    assert "| FD reported / measured | 0.20 | 0.75–1.25 | **no** |" in block
    assert "`labctl bench --full --out bench`" in block and "`abc123`" in block
    assert "(figures/a.png)" in text
    with pytest.raises(ResultsFormatError, match="headline"):
        readme_block(text.replace(HEADLINE_START, ""))
    with pytest.raises(ResultsFormatError, match="commit"):
        readme_block(text.replace("- commit:", "- revision:"))


def test_readme_table_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(_results_text(), encoding="utf-8")
    assert main(["bench", "--readme-table", "--results", str(path)]) == EXIT_OK
    assert capsys.readouterr().out.strip() == readme_block(_results_text())
    assert main(["bench", "--readme-table", "--results", str(tmp_path / "no.md")]) == (
        EXIT_BAD_INPUT
    )
    assert main(["bench", "--smoke", "--parts", "crb,nope", "--out", str(tmp_path)]) == (
        EXIT_BAD_INPUT
    )
    assert "nope" in capsys.readouterr().err


def test_readme_figures_table_matches_results() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    results = REPO / "bench" / "RESULTS.md"
    if README_START not in readme or README_END not in readme:
        pytest.skip(
            f"README.md has no {README_START} ... {README_END} block yet: paste the output of "
            "`labctl bench --readme-table` there"
        )
    if not results.is_file():
        pytest.skip("bench/RESULTS.md is absent: run `labctl bench --full --out bench`")
    start = readme.index(README_START)
    end = readme.index(README_END, start) + len(README_END)
    assert readme[start:end] == readme_block_from(results), (
        "README.md's figures table differs from bench/RESULTS.md: replace the block with the "
        "output of `labctl bench --readme-table`"
    )


def test_unavailable_method_is_reported_not_raised() -> None:
    assert method_available("hge") == (True, "")
    ok, why = method_available("no_such_method")
    assert not ok and why


@pytest.mark.parametrize(("n_controls", "window_s"), [(20, 0.025), (20, 0.1), (40, 0.05)])
def test_one_octave_plans_are_second_order_clean_within_the_slew_budget(
    n_controls: int, window_s: float
) -> None:
    from labctl.benchsuite.cost import FD_WIDE_STEP_V, octave_frequencies, slew_amplitudes
    from labctl.homodyne.plan import validate_frequencies

    freqs = octave_frequencies(n_controls, window_s)
    assert freqs is not None and len(freqs) == n_controls
    assert max(freqs) < 2 * min(freqs)  # one octave: sums above, differences below
    plan = validate_frequencies(
        freqs, 10_000, window_s, mains_hz=(), max_order=2, min_samples_per_period=2
    )
    assert plan.collisions() == []
    amplitudes = slew_amplitudes(freqs, 200.0)
    for f, a in zip(freqs, amplitudes, strict=True):
        assert 2 * math.pi * f * a <= 200.0 * (1 + 1e-12)
        assert 0 < a <= FD_WIDE_STEP_V


def test_one_octave_plan_refused_above_the_amplifier_band() -> None:
    from labctl.benchsuite.cost import octave_frequencies

    assert octave_frequencies(40, 0.025) is None  # 40 bins of 40 Hz from 1.6 kHz: to 3.16 kHz
