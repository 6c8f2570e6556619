"""The batch match of the double list: assign demands to resources so that the total score is as large as
possible, each demand to at most one resource, no resource past its spare capacity.

This is a maximum-weight b-matching on a bipartite graph, solved exactly as a min-cost flow (OR-Tools'
network simplex): source → demand (capacity 1), demand → resource (capacity 1, cost −score), resource → sink
(capacity = spare capacity), and a zero-cost bypass source → sink so that leaving a demand unmatched is
allowed. Scores are scaled to integers (micro-points); the optimum is exact at that resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class Candidate:
    """One demand that one resource may take, and its score (higher is better)."""

    demand: int
    resource: int
    score: float


@dataclass(frozen=True, slots=True)
class Assignment:
    pairs: list[Candidate]
    total: float


def optimal(candidates: Sequence[Candidate], capacity: Mapping[int, int]) -> Assignment:
    """The assignment of largest total score. `capacity` is each resource's spare capacity; a resource
    missing from it takes nothing. Candidates with a score ≤ 0 never help, so they are left out."""
    usable = [c for c in candidates if c.score > 0 and capacity.get(c.resource, 0) > 0]
    if not usable:
        return Assignment([], 0.0)
    demand_ids = sorted({c.demand for c in usable})
    resource_ids = sorted({c.resource for c in usable})
    demand_node = {key: 2 + n for n, key in enumerate(demand_ids)}
    resource_node = {key: 2 + len(demand_ids) + n for n, key in enumerate(resource_ids)}
    source, sink = 0, 1

    tails: list[int] = []
    heads: list[int] = []
    capacities: list[int] = []
    costs: list[int] = []

    def arc(tail: int, head: int, cap: int, cost: int) -> None:
        tails.append(tail)
        heads.append(head)
        capacities.append(cap)
        costs.append(cost)

    for key in demand_ids:
        arc(source, demand_node[key], 1, 0)
    first_pair_arc = len(tails)
    for c in usable:
        arc(demand_node[c.demand], resource_node[c.resource], 1, -round(c.score * SCALE))
    for key in resource_ids:
        arc(resource_node[key], sink, min(capacity[key], len(demand_ids)), 0)
    arc(source, sink, len(demand_ids), 0)

    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(
        np.asarray(tails, dtype=np.int32),
        np.asarray(heads, dtype=np.int32),
        np.asarray(capacities, dtype=np.int64),
        np.asarray(costs, dtype=np.int64),
    )
    supply = np.zeros(2 + len(demand_ids) + len(resource_ids), dtype=np.int64)
    supply[source] = len(demand_ids)
    supply[sink] = -len(demand_ids)
    flow.set_nodes_supplies(np.arange(len(supply), dtype=np.int32), supply)
    status = flow.solve()
    if status != flow.OPTIMAL:
        raise RuntimeError(f"the min-cost flow solver stopped with status {status}")
    flows = flow.flows(np.arange(first_pair_arc, first_pair_arc + len(usable), dtype=np.int32))
    pairs = [c for c, used in zip(usable, flows, strict=True) if used > 0]
    return Assignment(pairs, round(sum(c.score for c in pairs), 6))


def greedy(candidates: Sequence[Candidate], capacity: Mapping[int, int]) -> Assignment:
    """Best pair first, as a person with a sorted spreadsheet would: the yardstick the optimiser beats."""
    left = dict(capacity)
    taken: set[int] = set()
    pairs: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (-c.score, c.demand, c.resource)):
        if c.score <= 0 or c.demand in taken or left.get(c.resource, 0) <= 0:
            continue
        pairs.append(c)
        taken.add(c.demand)
        left[c.resource] -= 1
    return Assignment(pairs, round(sum(c.score for c in pairs), 6))
