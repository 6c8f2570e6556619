"""A workflow's states, its transitions and who may make each one, declared in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.errors import DomainError, InvalidInput

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
    # A step that leaves the instance in whatever state it is in (a session recorded, a note added).
    keeps_state: bool = False

    def to(self, state: str | None) -> str:
        """The state the step leaves an instance in that was in `state`."""
        return state if self.keeps_state and state is not None else self.target


def step(
    name: str, sources: Iterable[str], target: str, actors: Iterable[str], *, note: bool = False
) -> Transition:
    """A step from any of `sources` to `target`; with no sources, the step that starts an instance."""
    return Transition(name, frozenset(sources), target, frozenset(actors), note)


def stay(name: str, sources: Iterable[str], actors: Iterable[str], *, note: bool = False) -> Transition:
    """A step taken in any of `sources` that leaves the state as it is."""
    return Transition(name, frozenset(sources), "", frozenset(actors), note, keeps_state=True)


class StateMachine:
    def __init__(self, name: str, states: Iterable[str], transitions: Iterable[Transition]) -> None:
        self.name = name
        self.states = tuple(states)
        self.transitions = {t.name: t for t in transitions}
        known = set(self.states)
        for transition in self.transitions.values():
            targets = set() if transition.keeps_state else {transition.target}
            unknown = (transition.sources | targets) - known
            if unknown:
                raise ValueError(f"{name}.{transition.name} names unknown states {sorted(unknown)}")

    def check(
        self, name: str, state: str | None, actor_kinds: Iterable[str], note: str | None = None
    ) -> Transition:
        """The transition `name` from `state`, if one of `actor_kinds` may make it; else a typed error.
        `state` None is an instance not started yet, which only a step without sources starts."""
        transition = self.transitions.get(name)
        if transition is None:
            raise IllegalTransition(f"{self.name} has no step {name!r}")
        if state is None:
            if transition.sources:
                raise IllegalTransition(f"{name} does not start a {self.name}")
        elif state not in transition.sources:
            allowed = ", ".join(sorted(transition.sources))
            raise IllegalTransition(f"cannot {name} a {self.name} that is {state} (only from: {allowed})")
        if transition.actors.isdisjoint(actor_kinds):
            who = " or ".join(sorted(transition.actors))
            raise NotAllowed(f"only {who} may {name} a {self.name}")
        if transition.needs_note and not (note and note.strip()):
            raise InvalidInput(f"{name} needs a reason", field="note")
        return transition

    def available(self, state: str, actor_kinds: Iterable[str]) -> list[str]:
        kinds = set(actor_kinds)
        return [
            t.name for t in self.transitions.values() if state in t.sources and not t.actors.isdisjoint(kinds)
        ]
