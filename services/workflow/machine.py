"""A workflow's states, its transitions and who may make each one, declared in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.errors import DomainError

# The actor kind of the beat jobs and tasks (deadlines, escalations).
SYSTEM = "system"


class IllegalTransition(DomainError):
    code = "ILLEGAL_TRANSITION"


class NotAllowed(DomainError):
    code = "FORBIDDEN"


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: str
    # Actor kinds allowed to make it: role names, "submitter", "system", or whatever the workflow names.
    actors: frozenset[str]
    needs_note: bool = False


def step(
    name: str, sources: Iterable[str], target: str, actors: Iterable[str], *, note: bool = False
) -> Transition:
    return Transition(name, frozenset(sources), target, frozenset(actors), note)


class StateMachine:
    def __init__(self, name: str, states: Iterable[str], transitions: Iterable[Transition]) -> None:
        self.name = name
        self.states = tuple(states)
        self.transitions = {t.name: t for t in transitions}
        known = set(self.states)
        for transition in self.transitions.values():
            unknown = (transition.sources | {transition.target}) - known
            if unknown:
                raise ValueError(f"{name}.{transition.name} names unknown states {sorted(unknown)}")

    def check(self, name: str, state: str, actor_kinds: Iterable[str], note: str | None = None) -> Transition:
        """The transition `name` from `state`, if one of `actor_kinds` may make it; else a typed error."""
        transition = self.transitions.get(name)
        if transition is None:
            raise IllegalTransition(f"{self.name} has no step {name!r}")
        if state not in transition.sources:
            allowed = ", ".join(sorted(transition.sources))
            raise IllegalTransition(f"cannot {name} a {self.name} that is {state} (only from: {allowed})")
        if transition.actors.isdisjoint(actor_kinds):
            who = " or ".join(sorted(transition.actors))
            raise NotAllowed(f"only {who} may {name} a {self.name}")
        if transition.needs_note and not (note and note.strip()):
            raise IllegalTransition(f"{name} needs a reason", field="note")
        return transition

    def available(self, state: str, actor_kinds: Iterable[str]) -> list[str]:
        kinds = set(actor_kinds)
        return [
            t.name for t in self.transitions.values() if state in t.sources and not t.actors.isdisjoint(kinds)
        ]
