"""The batch match is exact: on random instances small enough to enumerate, its total equals the brute-force
optimum, and it is never below greedy."""

from __future__ import annotations

import random

import pytest

from services.matching.optimiser import Candidate, greedy, optimal
from tests.helpers import brute_force


@pytest.mark.parametrize("seed", range(8))
def test_optimal_equals_brute_force_and_beats_greedy(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        demands, resources = rng.randint(1, 7), rng.randint(1, 4)
        candidates = [
            Candidate(d, r, round(rng.random(), 4))
            for d in range(demands)
            for r in range(resources)
            if rng.random() < 0.7
        ]
        capacity = {r: rng.randint(0, 3) for r in range(resources)}
        found = optimal(candidates, capacity)
        assert found.total == pytest.approx(brute_force(candidates, capacity), abs=1e-5)
        assert greedy(candidates, capacity).total <= found.total + 1e-9
        taken: dict[int, int] = {}
        for pair in found.pairs:
            taken[pair.resource] = taken.get(pair.resource, 0) + 1
        assert all(taken[r] <= capacity[r] for r in taken)
        assert len({pair.demand for pair in found.pairs}) == len(found.pairs)


def test_greedy_is_beaten_where_best_pair_first_blocks() -> None:
    # Greedy takes (0, 0) at 0.9 and leaves demand 1 without a resource; the optimum is 0.8 + 0.7.
    candidates = [Candidate(0, 0, 0.9), Candidate(0, 1, 0.8), Candidate(1, 0, 0.7)]
    capacity = {0: 1, 1: 1}
    assert greedy(candidates, capacity).total == pytest.approx(0.9)
    assert optimal(candidates, capacity).total == pytest.approx(1.5)
