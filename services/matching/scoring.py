"""The double list's score: how well a resource (a deputy, a department, an organisation) fits a demand.

One formula serves request routing, level-2 mediation and the batch match, so each match can show the
terms that made it. Every term lies in 0..1; the total is their weighted sum, 0..1 as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

# Two kilometres is a walk across a few communities; at that distance the distance term is one half.
HALF_DISTANCE_METERS = 2_000.0
# A resource nobody has rated yet counts as neither good nor bad.
UNRATED_SATISFACTION = 80.0


@dataclass(frozen=True, slots=True)
class Weights:
    fit: float = 0.5
    distance: float = 0.2
    load: float = 0.2
    satisfaction: float = 0.1


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class Score:
    total: float
    eligible: bool
    terms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scores:
    """The scores of many pairs at once: each term and the total, one array entry per pair."""

    total: npt.NDArray[np.float64]
    eligible: npt.NDArray[np.bool_]
    terms: Mapping[str, npt.NDArray[np.float64]]

    def at(self, index: int) -> Score:
        terms = {name: round(float(values[index]), 6) for name, values in self.terms.items()}
        return Score(round(float(self.total[index]), 6), bool(self.eligible[index]), terms)


def scores(
    *,
    fit: npt.ArrayLike,
    distance_meters: npt.ArrayLike,
    load: npt.ArrayLike,
    capacity: npt.ArrayLike,
    satisfaction: npt.ArrayLike,
    require_fit: bool = True,
    weights: Weights = DEFAULT_WEIGHTS,
) -> Scores:
    """`score` for arrays of pairs (a batch run weighs hundreds of thousands); a NaN satisfaction is
    unrated."""
    fit_, distance, load_, capacity_, rated = (
        np.asarray(values, dtype=np.float64)
        for values in (fit, distance_meters, load, capacity, satisfaction)
    )
    if (capacity_ < 0).any() or (load_ < 0).any() or (distance < 0).any():
        raise ValueError("capacity, load and distance cannot be negative")
    fit_term = np.clip(fit_, 0.0, 1.0)
    distance_term = 1.0 / (1.0 + distance / HALF_DISTANCE_METERS)
    with np.errstate(divide="ignore", invalid="ignore"):
        load_term = np.where(capacity_ > 0, np.maximum(0.0, 1.0 - load_ / capacity_), 0.0)
    satisfaction_term = np.clip(np.where(np.isnan(rated), UNRATED_SATISFACTION, rated) / 100.0, 0.0, 1.0)
    total = np.round(
        weights.fit * fit_term
        + weights.distance * distance_term
        + weights.load * load_term
        + weights.satisfaction * satisfaction_term,
        6,
    )
    eligible = ~(require_fit & (fit_term == 0.0))
    terms = {"fit": fit_term, "distance": distance_term, "load": load_term, "satisfaction": satisfaction_term}
    return Scores(total, eligible, terms)


def score(
    *,
    fit: float,
    distance_meters: float,
    load: float,
    capacity: float,
    satisfaction: float | None,
    require_fit: bool = True,
    weights: Weights = DEFAULT_WEIGHTS,
) -> Score:
    """The score of one resource for one demand. `fit` is 1 when the resource's skills serve the demand's
    category, `load` what it already carries this month against its monthly `capacity`, `satisfaction`
    the mean rating (0..100) of what it did before. Without a fit, and `require_fit`, it is not eligible."""
    found = scores(
        fit=[fit],
        distance_meters=[distance_meters],
        load=[load],
        capacity=[capacity],
        satisfaction=[math.nan if satisfaction is None else satisfaction],
        require_fit=require_fit,
        weights=weights,
    )
    return found.at(0)
