"""The benchmark suite (``labctl bench``): a smoke run writes its report and figures; the README
figures table is generated from bench/RESULTS.md and must match the README's block."""

from __future__ import annotations

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
