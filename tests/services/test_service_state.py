"""The instance state machine as data: ``TRANSITIONS`` and ``StateMachine``.

A Hypothesis rule-based machine fires random triggers at a ``StateMachine`` and checks every
answer against the table; a second property drives whole lifecycles the way the engine does.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from golem_trio.services import (
    TRANSITIONS,
    IllegalTransition,
    ServiceState,
    StateChange,
    StateMachine,
    Trigger,
)

S = ServiceState
T = Trigger
ACTIVE = (S.PENDING, S.STARTING, S.RUNNING)
REASONS = st.none() | st.text(max_size=12)


def _reaches(start: ServiceState, goal: ServiceState) -> bool:
    seen = {start}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        if state is goal:
            return True
        for (old, _trigger), new in TRANSITIONS.items():
            if old is state and new not in seen:
                seen.add(new)
                todo.append(new)
    return False


# --- the table --------------------------------------------------------------------------------


def test_every_state_can_reach_terminated() -> None:
    for state in ServiceState:
        assert _reaches(state, S.TERMINATED), state


def test_every_state_is_reachable_from_pending() -> None:
    for state in ServiceState:
        assert _reaches(S.PENDING, state), state


def test_terminated_only_leaves_by_restart() -> None:
    out = {trigger: new for (old, trigger), new in TRANSITIONS.items() if old is S.TERMINATED}
    assert out == {T.RESTART: S.PENDING}


def test_every_active_state_stops_and_fails_into_stopping() -> None:
    for state in ACTIVE:
        assert TRANSITIONS[(state, T.STOP)] is S.STOPPING
        assert TRANSITIONS[(state, T.FAILURE)] is S.STOPPING


def test_stopping_only_ends_by_cleanup() -> None:
    out = {trigger: new for (old, trigger), new in TRANSITIONS.items() if old is S.STOPPING}
    assert out == {T.CLEANED_UP: S.TERMINATED}


def test_restart_only_from_terminated() -> None:
    sources = {old for (old, trigger) in TRANSITIONS if trigger is T.RESTART}
    assert sources == {S.TERMINATED}


def test_available_states_are_yapapis() -> None:
    assert {s for s in ServiceState if s.is_available} == {S.STARTING, S.RUNNING, S.STOPPING}


def test_illegal_transition_names_state_and_trigger() -> None:
    machine = StateMachine()
    with pytest.raises(IllegalTransition, match=r"'pending'.*'cleaned-up'") as info:
        machine.fire(T.CLEANED_UP)
    assert info.value.state is S.PENDING
    assert info.value.trigger is T.CLEANED_UP
    assert machine.history == []


async def test_changes_are_stamped_with_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    machine = StateMachine()
    await trio.sleep(42)
    change = machine.fire(T.ACTIVITY_READY, "ready")
    assert change.at == pytest.approx(trio.current_time())
    assert change.at >= 42


def test_changes_outside_trio_are_stamped_zero() -> None:
    assert StateMachine().fire(T.STOP).at == 0.0


# --- random triggers --------------------------------------------------------------------------


class RandomTriggers(RuleBasedStateMachine):
    """Random triggers: allowed ones follow the table, the others change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.notified: list[StateChange] = []
        self.machine = StateMachine(on_change=self.notified.append)
        self.expected = S.PENDING
        self.expected_len = 0

    @rule(trigger=st.sampled_from(Trigger), reason=REASONS)
    def fire_any(self, trigger: Trigger, reason: str | None) -> None:
        before = self.machine.state
        target = TRANSITIONS.get((before, trigger))
        assert self.machine.can(trigger) is (target is not None)
        if target is None:
            with pytest.raises(IllegalTransition) as info:
                self.machine.fire(trigger, reason)
            assert (info.value.state, info.value.trigger) == (before, trigger)
            return
        self._fire_allowed(trigger, reason, target)

    @rule(data=st.data(), reason=REASONS)
    def fire_allowed(self, data: st.DataObject, reason: str | None) -> None:
        allowed = sorted(t for t in Trigger if (self.machine.state, t) in TRANSITIONS)
        trigger = data.draw(st.sampled_from(allowed))
        self._fire_allowed(trigger, reason, TRANSITIONS[(self.machine.state, trigger)])

    @precondition(lambda self: self.machine.state is not S.TERMINATED)
    @rule()
    def shortest_way_out(self) -> None:
        # From any live state there is a short path to terminated: stop, then clean up.
        if self.machine.state is not S.STOPPING:
            self._fire_allowed(T.STOP, "stop", S.STOPPING)
        self._fire_allowed(T.CLEANED_UP, "done", S.TERMINATED)

    def _fire_allowed(self, trigger: Trigger, reason: str | None, target: ServiceState) -> None:
        before = self.machine.state
        change = self.machine.fire(trigger, reason)
        assert (change.old, change.new, change.trigger, change.reason) == (
            before,
            target,
            trigger,
            reason,
        )
        self.expected = target
        self.expected_len += 1

    @invariant()
    def state_is_the_models(self) -> None:
        assert self.machine.state is self.expected
        assert len(self.machine.history) == self.expected_len

    @invariant()
    def history_is_a_connected_chain(self) -> None:
        history = self.machine.history
        if history:
            assert history[0].old is S.PENDING
            assert history[-1].new is self.machine.state
        for earlier, later in itertools.pairwise(history):
            assert later.old is earlier.new
        for change in history:
            assert TRANSITIONS[(change.old, change.trigger)] is change.new

    @invariant()
    def every_change_was_announced(self) -> None:
        assert self.notified == self.machine.history

    @invariant()
    def visited_is_the_history(self) -> None:
        assert self.machine.visited == {S.PENDING} | {c.new for c in self.machine.history}

    @invariant()
    def terminated_stays_reachable(self) -> None:
        assert _reaches(self.machine.state, S.TERMINATED)


TestRandomTriggers = RandomTriggers.TestCase


# --- lifecycles driven as the engine drives them --------------------------------------------

#: How far a life got before it ended, and how it ended.
_ENDINGS = {
    S.PENDING: (T.STOP, T.FAILURE),
    S.STARTING: (T.STOP, T.FAILURE),
    S.RUNNING: (T.STOP, T.FAILURE, T.RUN_FINISHED),
}


@st.composite
def _lives(draw: st.DrawFn) -> list[tuple[ServiceState, Trigger, str]]:
    count = draw(st.integers(min_value=1, max_value=5))
    lives = []
    for _ in range(count):
        reached = draw(st.sampled_from(ACTIVE))
        ending = draw(st.sampled_from(_ENDINGS[reached]))
        reason = draw(st.text(min_size=1, max_size=20))
        lives.append((reached, ending, reason))
    return lives


@given(lives=_lives())
def test_engine_driven_lifecycles_end_terminated(
    lives: list[tuple[ServiceState, Trigger, str]],
) -> None:
    machine = StateMachine()
    for number, (reached, ending, reason) in enumerate(lives):
        if number:
            machine.fire(T.RESTART, f"restart {number}")
        if reached is not S.PENDING:
            machine.fire(T.ACTIVITY_READY, "activity")
        if reached is S.RUNNING:
            machine.fire(T.STARTED)
        assert machine.state is reached
        # The stopping phase begins with the trigger that ended the life, with its reason.
        assert machine.fire(ending, reason).new is S.STOPPING
        machine.fire(T.CLEANED_UP, reason)
        assert machine.state is S.TERMINATED
        last = machine.history[-1]
        assert (last.old, last.new, last.trigger, last.reason) == (
            S.STOPPING,
            S.TERMINATED,
            T.CLEANED_UP,
            reason,
        )
        assert machine.history[-2].reason == reason
    assert machine.state is S.TERMINATED
    restarts = [c for c in machine.history if c.trigger is T.RESTART]
    assert len(restarts) == len(lives) - 1
    # Every life begins at pending, through a restart for all but the first.
    assert all(c.new is S.PENDING for c in restarts)
