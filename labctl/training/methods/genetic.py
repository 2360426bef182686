"""The genetic algorithm used on DNPUs (Bose 2015, Chen 2020; brains-py's defaults).

One iteration is one generation: every genome (a vector of control voltages) is measured on
every case in one DC record (population × cases settled plateaus), scored by the configured
loss, and ranked. The next generation keeps the ``elites`` best genomes unchanged (they are
measured again, so noise cannot freeze a lucky score) and fills the rest with offspring:

* **rank-based selection**: parents are drawn with probability proportional to
  ``population − rank`` (best rank 0), two distinct parents per child;
* **BLX-α-β crossover**: with ``x`` the better and ``y`` the worse parent and ``d = |x − y|``
  per gene, the child gene is uniform in ``[x − αd, y + βd]`` (``x ≤ y``) or
  ``[y − βd, x + αd]`` (``x > y``): it reaches further beyond the better parent;
* **decaying mutation**: every child gene moves a fraction ``r`` of the way to a fresh uniform
  draw in its range, ``r`` falling linearly from ``mutation_start`` to ``mutation_end`` over
  ``mutation_generations`` generations;

then every gene is clipped into its range. The iteration record holds the generation's best
genome (its controls, outputs, loss, accuracy); gradients are NaN (none are measured) and the
population's statistics are in ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from labctl.device import FloatArray
from labctl.run.store import IterationRecord
from labctl.training.baselines import measure_plateaus
from labctl.training.methods.base import MethodContext, Observation
from labctl.training.methods.params import GeneticParams
from labctl.training.metrics import separation, threshold_accuracy
from labctl.training.optimisers import (
    BestTracker,
    generator_state,
    sample_controls,
    set_generator_state,
)


class GeneticMethod:
    """The DNPU genetic algorithm (see the module docstring)."""

    def __init__(self, context: MethodContext, params: GeneticParams) -> None:
        self._context = context
        self._params = params
        self._window_s, self._settle_s = context.dc_timing(params.window_s, params.settle_s)
        self._lower, self._upper = context.control_bounds()
        self._rng = np.random.default_rng([context.seed, 0x6A])
        self._best = BestTracker()
        self._population = np.zeros((params.population, len(self._lower)))
        self._generation = 0
        self._ranked: np.ndarray | None = None
        self._losses: FloatArray | None = None

    @property
    def best(self) -> BestTracker:
        return self._best

    @property
    def restarts(self) -> list[tuple[int, str]]:
        return []

    def mutation_rate(self, generation: int) -> float:
        """The mutation rate of ``generation`` (linear decay, then constant)."""
        p = self._params
        fraction = min(generation / p.mutation_generations, 1.0)
        return p.mutation_start + (p.mutation_end - p.mutation_start) * fraction

    def start(self) -> None:
        self._population = np.array(
            [
                sample_controls(self._rng, self._lower, self._upper)
                for _ in range(self._params.population)
            ]
        )

    def fallback_controls(self) -> FloatArray:
        return self._population[0].copy()

    def observe(self, input_volts: FloatArray, targets: FloatArray, cases: Any) -> Observation:
        population = self._population
        n_cases = len(input_volts)
        plateaus = np.concatenate(
            [self._context.operating_points(genome, input_volts) for genome in population]
        )
        m = measure_plateaus(
            self._context.device, plateaus, window_s=self._window_s, settle_s=self._settle_s
        )
        outputs = m.means_a.reshape(len(population), n_cases)
        sems = m.sems_a.reshape(len(population), n_cases)
        losses = np.array([float(self._context.loss(o, targets)[0]) for o in outputs])
        ranked = np.argsort(np.where(np.isfinite(losses), losses, np.inf), kind="stable")
        self._ranked, self._losses = ranked, losses
        best = int(ranked[0])
        out = outputs[best]
        n_controls = population.shape[1]
        finite = losses[np.isfinite(losses)]
        raw = {"record_a": m.record_a} if self._context.store_raw else None
        return Observation(
            controls_v=population[best].copy(),
            outputs_a=out.copy(),
            gradients_a_per_v=np.full((n_cases, n_controls), np.nan),
            stderr_a_per_v=np.full((n_cases, n_controls), np.nan),
            loss=float(losses[best]),
            accuracy=float(threshold_accuracy(out, targets, direction=1).accuracy),
            separation_a=float(separation(out, targets)),
            saturated=m.saturated,
            restart_index=0,
            extra={
                "saturated": m.saturated,
                "cases": [int(c) for c in cases],
                "generation": self._generation,
                "population": len(population),
                "mutation_rate": self.mutation_rate(self._generation),
                "loss_median": float(np.median(finite)) if finite.size else None,
                "loss_mean": float(np.mean(finite)) if finite.size else None,
                "loss_worst": float(np.max(finite)) if finite.size else None,
                "loss_std": float(np.std(finite)) if finite.size else None,
                "best_output_sem_a": [float(v) for v in sems[best]],
            },
            raw=raw,
        )

    def advance(self, observation: Observation, iteration: int, stopping: bool) -> dict[str, Any]:
        self._best.update(observation.loss, observation.controls_v, iteration)
        if not stopping:
            assert self._ranked is not None
            self._population = self._next_population(self._population[self._ranked])
            self._generation += 1
        return {"next_generation": self._generation}

    def _next_population(self, ranked: FloatArray) -> FloatArray:
        p = self._params
        rng = self._rng
        size, n_genes = ranked.shape
        weights = np.arange(size, 0, -1, dtype=np.float64)
        weights /= weights.sum()
        children = []
        span = self._upper - self._lower
        rate = self.mutation_rate(self._generation + 1)
        for _ in range(size - p.elites):
            a, b = rng.choice(size, size=2, replace=False, p=weights)
            better, worse = ranked[min(a, b)], ranked[max(a, b)]
            d = np.abs(better - worse)
            low = np.where(better <= worse, better - p.alpha * d, worse - p.beta * d)
            high = np.where(better <= worse, worse + p.beta * d, better + p.alpha * d)
            child = rng.uniform(low, high)
            fresh = self._lower + span * rng.random(n_genes)
            child = child + rate * (fresh - child)
            children.append(np.clip(child, self._lower, self._upper))
        return np.concatenate([ranked[: p.elites], np.array(children)])

    def state_dict(self) -> dict[str, Any]:
        return {
            "population_v": self._population.tolist(),
            "generation": self._generation,
            "rng": generator_state(self._rng),
            "best": self._best.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._population = np.asarray(state["population_v"], dtype=np.float64)
        self._generation = int(state["generation"])
        set_generator_state(self._rng, state["rng"])
        self._best.load_state_dict(state["best"])

    def resume_from_record(self, record: IterationRecord) -> None:
        """Without a checkpoint the population is lost: start a fresh one (same best kept)."""
        self._generation = int(record.extra.get("next_generation", 0))
        self.start()
        self._population[0] = np.clip(record.controls_v, self._lower, self._upper)
