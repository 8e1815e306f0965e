"""The states an operator asks the list about (its tabs), and what "stuck" means.

Each tab selects machines by one fact (docs/workflows.md, "Stuck, waiting, unmanaged"):

| tab | filter | a machine is in it when |
|---|---|---|
| working | `working=1` | some work is held by an alive session |
| in backoff | `in_backoff=1` | it has an active backoff (`until > now()`) |
| stale work | `stale=1` | some work is held by an expired session |
| stuck | `stuck=1` | some workflow applies, and it is blocked with no end in sight |
| eligible | `eligible=1` | some workflow is eligible: its component takes it on its next pass |
| unmanaged | `unmanaged=1` | no workflow applies (built in: no Provided, no installation request) |

A machine is **stuck** when all of these hold:
- some known workflow applies to it (its scope: the tags it needs, and the installation
  request when it needs one), so something is meant to happen to it;
- nothing acts on it now or at a known time: no work is held by an alive session, and
  no workflow is eligible, running or waiting (a backoff ends, a recovery threshold
  passes: those machines are "waiting", not stuck);
- it is not at rest: its agent does not heartbeat (or it does, and its installation
  failed), and it is not installed with Success.

Each stuck machine has one blocker, the first of BLOCKERS that holds for it, and
`blocker=<name>` lists the stuck machines of one. Every tab and blocker is a formula
over the probes of app/bmdb/formulas.py (`tab`, `blocker`: the list's filters, through
`condition`) and, read off the counted groups (app/bmdb/workflows.py, `counts_sql`), a
predicate in Python (`MachineState`), so each count equals the length of the list its
link shows (tests/test_machine_states.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from app.bmdb.formulas import TRUE, Formula, all_of, any_of, correlated, negate
from app.bmdb.sql import SqlWhere
from app.bmdb.workflows import MOVING, STATES, Fleet, Group

# (filter parameter, label): the list's state tabs after "all", in the order shown.
TABS = (
    ("working", "working"),
    ("in_backoff", "in backoff"),
    ("stale", "stale work"),
    ("stuck", "stuck"),
    ("eligible", "eligible"),
    ("unmanaged", "unmanaged"),
)
TAB_NAMES = tuple(name for name, _ in TABS)
# (name, label): why a stuck machine is stuck, the first that holds.
BLOCKERS = (
    ("stale_work", "work held by an expired session"),
    ("failed_installation", "installation failed"),
    ("no_workflow_acts", "no workflow acts on it"),
)
BLOCKER_NAMES = tuple(name for name, _ in BLOCKERS)
_STILL = tuple(s for s in STATES if s not in MOVING and s != "unknown")


def _at_rest(fleet: Fleet) -> Formula:
    """Left alone on purpose: the agent heartbeats (and its installation did not fail),
    or the OS is installed with Success (the installed OS replaced the agent)."""
    return any_of(
        all_of(fleet.heartbeating, negate(fleet.installation_failed)),
        fleet.installation_succeeded,
    )


def stuck(fleet: Fleet) -> Formula:
    # Written (so joined) most selective first: "at rest" excludes most of a fleet; the
    # scope last, for the few machines left (first, it read every machine's tags).
    return all_of(
        negate(_at_rest(fleet)),
        *(w.in_states(_STILL) for w in fleet.known),
        negate(fleet.working),
        fleet.managed,
    )


def _blocker_facts(fleet: Fleet) -> tuple[Formula, ...]:
    """What each of BLOCKERS says about a stuck machine, before the earlier ones."""
    return (fleet.stale_work, fleet.installation_failed, TRUE)


def blocker(fleet: Fleet, name: str) -> Formula:
    """Stuck, and `name` is the first of BLOCKERS that holds (its fact first: the rarest,
    stale work, then reads the few machines it holds)."""
    facts = _blocker_facts(fleet)
    i = BLOCKER_NAMES.index(name)
    return all_of(facts[i], *(negate(f) for f in facts[:i]), stuck(fleet))


def tab(fleet: Fleet, name: str) -> Formula:
    """The machines of the state tab `name` (one of TAB_NAMES)."""
    if name == "stuck":
        return stuck(fleet)
    if name == "eligible":
        return any_of(*(w.in_states(("eligible",)) for w in fleet.known))
    if name == "unmanaged":
        return negate(fleet.managed)
    facts = {"working": fleet.working, "in_backoff": fleet.in_backoff, "stale": fleet.stale_work}
    return facts[name]


def condition(formula: Formula, params: SqlWhere, m: str = "m") -> str:
    """SQL: machine `m` is selected by `formula` (a tab's, a blocker's), written as joins."""
    return correlated(formula, params, m, joins=True)


@dataclass(frozen=True)
class MachineState:
    """A counted group's tabs and blocker: the formulas above, read in Python."""

    tabs: frozenset[str]
    blocker: str | None = None  # stuck machines only

    @classmethod
    def of(cls, group: Group) -> MachineState:
        facts, states = group.facts, group.states
        at_rest = (facts["heartbeating"] and not facts["installation_failed"]) or facts[
            "installation_succeeded"
        ]
        tabs = {
            "working": facts["working"],
            "in_backoff": facts["in_backoff"],
            "stale": facts["stale_work"],
            "eligible": "eligible" in states,
            "unmanaged": not facts["managed"],
            "stuck": facts["managed"] and not facts["working"]
            and not any(s in MOVING for s in states) and not at_rest,
        }  # fmt: skip
        why = None
        if tabs["stuck"]:
            first = (facts["stale_work"], facts["installation_failed"], True)
            why = next(name for name, holds in zip(BLOCKER_NAMES, first, strict=True) if holds)
        return cls(frozenset(t for t, yes in tabs.items() if yes), why)

    def selected(self, tabs: Iterable[str], blocker: str | None) -> bool:
        """In every one of `tabs`, and stuck by `blocker` when given."""
        return all(t in self.tabs for t in tabs) and blocker in (None, self.blocker)


@dataclass
class Tally:
    """Counts read off the groups: machines per state tab, per blocker of the stuck ones,
    and per known workflow and state of those `selected` (the view's own machines)."""

    machines: int = 0
    tabs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TAB_NAMES, 0))
    blockers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BLOCKER_NAMES, 0))
    workflows: dict[str, dict[str, int]] = field(default_factory=dict)


def tally(
    fleet: Fleet, groups: list[Group], selected: Callable[[MachineState], bool] = lambda _: True
) -> Tally:
    counts = Tally(workflows={w.name: dict.fromkeys(STATES, 0) for w in fleet.known})
    for g in groups:
        state = MachineState.of(g)
        counts.machines += g.machines
        for t in state.tabs:
            counts.tabs[t] += g.machines
        if state.blocker is not None:
            counts.blockers[state.blocker] += g.machines
        if selected(state):
            for w, s in zip(fleet.known, g.states, strict=True):
                counts.workflows[w.name][s] += g.machines
    return counts
