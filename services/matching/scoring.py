"""The double list's score: how well a resource (a deputy, a department, an organisation) fits a demand.

One formula serves request routing, level-2 mediation and the batch match, so each match can show the
terms that made it. Every term lies in 0..1; the total is their weighted sum, 0..1 as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    if capacity < 0 or load < 0 or distance_meters < 0:
        raise ValueError("capacity, load and distance cannot be negative")
    fit_term = min(max(fit, 0.0), 1.0)
    distance_term = 1.0 / (1.0 + distance_meters / HALF_DISTANCE_METERS)
    load_term = max(0.0, 1.0 - load / capacity) if capacity > 0 else 0.0
    rated = UNRATED_SATISFACTION if satisfaction is None else satisfaction
    satisfaction_term = min(max(rated / 100.0, 0.0), 1.0)
    terms = {
        "fit": round(fit_term, 6),
        "distance": round(distance_term, 6),
        "load": round(load_term, 6),
        "satisfaction": round(satisfaction_term, 6),
    }
    total = (
        weights.fit * fit_term
        + weights.distance * distance_term
        + weights.load * load_term
        + weights.satisfaction * satisfaction_term
    )
    eligible = not (require_fit and fit_term == 0.0)
    return Score(round(total, 6), eligible, terms)
