"""``labctl reproduce``: a tiny run writes its report and PNGs; Fig. 3b's analytic curves agree
with the simulated lock-in; the sphere threshold helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.cli import main
from labctl.exit_codes import EXIT_OK
from labctl.reproduce import fig3b
from labctl.reproduce.fig4 import TaskResult, best_threshold

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_reproduce_smoke_writes_report_and_pngs(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    assert main(["reproduce", "--smoke", "--out", str(out)]) == EXIT_OK
    text = (out / "REPRODUCE.md").read_text(encoding="utf-8")
    for heading in ("## Fig. 3b", "## Fig. 3c,d", "## Fig. 4a", "## Fig. 4b,c"):
        assert heading in text
    assert text.count("Published claim:") == 4
    for name in ("fig3b", "fig3cd", "fig4a", "fig4bc"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert f"(figures/{name}.png)" in text


def test_fig3b_analytic_matches_simulation_and_falls_to_the_floor() -> None:
    res = fig3b.compute(repeats=150, spacings_hz=(3.0, 20.0, 80.0), seed=1)
    for ratio in fig3b.RATIOS:
        curve = res.parallel_analytic[ratio]
        assert np.all(np.diff(curve) < 0)  # falls with the spacing
        assert np.all(curve >= res.sequential_analytic)
        ratio_sim = res.parallel_simulated[ratio] / curve
        assert np.all((ratio_sim > 0.6) & (ratio_sim < 1.6))
    assert np.all(res.parallel_analytic[20.0] > res.parallel_analytic[2.05])
    assert np.allclose(res.sequential_simulated / res.sequential_analytic, 1.0, atol=0.4)


def test_best_threshold_and_accuracy() -> None:
    outputs = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    targets = np.array([False, False, False, True, True, False])
    threshold, above = best_threshold(outputs, targets)
    assert above and 3.0 < threshold < 4.0
    result = TaskResult(
        "SPHERE",
        outputs_a=[float(v) for v in outputs],
        targets=[float(t) for t in targets],
        radii=[0.1] * 6,
        test=[False, False, False, False, True, True],
    )
    assert result.accuracy("train") == 1.0
    assert result.accuracy("test") == 0.5
    gate = TaskResult("AND", outputs_a=[1e-9, 2e-9, 3e-9, 9e-9], targets=[0, 0, 0, 1])
    assert gate.threshold_a() == pytest.approx(6e-9)
    assert gate.accuracy() == 1.0
