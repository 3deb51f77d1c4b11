"""The threshold alert state machine: who gets told what, and when not to tell them again.

Built on the lessons of Grafana and Redash (``docs/conditions.md``): notify on a state change,
repeat a standing problem only after a re-arm period (Grafana's 4 h repeat interval), send one
recovery notice, let the owner choose what "no data" and "error" mean, and (Grafana's pending period
and keep-firing-for) enter a breach only after N breached checks in a row and leave it only after M
OK ones. Only the state, the time of the last notice and the run of checks pointing away from the
state are stored, so the machine survives restarts and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

Observation = Literal["breached", "ok", "no_data", "error"]
Notice = Literal["triggered", "still_triggered", "recovered", "no_data", "error"]


class AlertState(StrEnum):
    """What the alert last concluded; every state except OK is a standing problem."""

    OK = "OK"
    TRIGGERED = "TRIGGERED"
    NO_DATA = "NO_DATA"
    ERROR = "ERROR"


class NoDataPolicy(StrEnum):
    """What an evaluation without data means."""

    KEEP_LAST = "keep_last"  # nothing changes, nobody is told
    ALERT = "alert"  # a NO_DATA problem, notified like a breach
    OK = "ok"  # the same as a value within the threshold


class ErrorPolicy(StrEnum):
    """What a failed evaluation (Cube down, bad query) means; same choices as :class:`NoDataPolicy`."""

    KEEP_LAST = "keep_last"
    ALERT = "alert"
    OK = "ok"


@dataclass(frozen=True)
class StoredState:
    """What is persisted between evaluations (``kpi_thresholds``).

    :param last_notified_at: when the last notice of any kind went out; the re-arm clock.
    :param streak: consecutive checks so far that point away from ``state`` — breached checks while
        not TRIGGERED, OK ones while TRIGGERED — toward the pending period.
    """

    state: AlertState
    last_notified_at: datetime | None = None
    streak: int = 0


@dataclass(frozen=True)
class Settings:
    """Per-alert anti-spam choices.

    :param rearm: how long a standing problem stays quiet before it is repeated.
    :param notify_on_recovery: send one "recovered" notice when a notified breach or no-data ends.
    :param pending_checks: breached checks in a row before the alert enters TRIGGERED (and notifies).
    :param recovery_checks: OK checks in a row before a TRIGGERED alert is back to OK.
    """

    rearm: timedelta = timedelta(hours=4)
    notify_on_recovery: bool = True
    on_no_data: NoDataPolicy = NoDataPolicy.KEEP_LAST
    on_error: ErrorPolicy = ErrorPolicy.ALERT
    pending_checks: int = 1
    recovery_checks: int = 1

    def __post_init__(self) -> None:
        if self.rearm < timedelta(0):
            raise ValueError(f"rearm must not be negative, got {self.rearm}")
        if self.pending_checks < 1 or self.recovery_checks < 1:
            raise ValueError("pending_checks and recovery_checks must be 1 or more")


@dataclass(frozen=True)
class Transition:
    """The decision for one evaluation.

    Persist :attr:`stored` only once the notice (if any) is delivered: a failed send then
    leaves the old state, and the next evaluation decides to send it again.

    :param last_notified_at: the re-arm clock to store with ``new_state``.
    :param streak: the pending period's count to store with ``new_state`` (0 when nothing is pending).
    """

    new_state: AlertState
    notify: Notice | None
    reason: str
    last_notified_at: datetime | None = None
    streak: int = 0

    @property
    def stored(self) -> StoredState:
        return StoredState(self.new_state, self.last_notified_at, self.streak)


_PROBLEM_NOTICE: dict[AlertState, Notice] = {
    AlertState.TRIGGERED: "triggered",
    AlertState.NO_DATA: "no_data",
    AlertState.ERROR: "error",
}
_REPEAT_NOTICE: dict[AlertState, Notice] = {**_PROBLEM_NOTICE, AlertState.TRIGGERED: "still_triggered"}
#: Problems whose notices go to the alert's recipients, so their end is news to them too. Errors
#: go to owners (or nowhere): a "recovered" after one would tell recipients of a problem they never saw.
_RECOVERABLE = frozenset({AlertState.TRIGGERED, AlertState.NO_DATA})


def decide(
    stored: StoredState | None, observation: Observation, *, now: datetime, settings: Settings
) -> Transition:
    """Turn one observation into the next state and at most one notice.

    :param stored: the persisted state; None for an alert never evaluated (treated as OK).
    :param now: the evaluation instant (aware); re-arm is measured against it.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    current = stored or StoredState(AlertState.OK)
    clock = current.last_notified_at
    target = _target(observation, settings)
    if target is None:  # neither counts toward a pending period nor breaks it
        return Transition(
            current.state, None, f"{observation}: state kept (policy keep_last)", clock, current.streak
        )
    needed = _checks_needed(current.state, target, settings)
    if current.streak + 1 < needed:
        streak = current.streak + 1
        moving = "breached" if target is AlertState.TRIGGERED else "OK"
        reason = f"{moving} {streak} of {needed} checks in a row: still {current.state} (pending)"
        return Transition(current.state, None, reason, clock, streak)
    if target is AlertState.OK:
        if current.state is AlertState.OK:
            return Transition(target, None, "still OK", clock)
        if current.state not in _RECOVERABLE or clock is None:
            return Transition(
                target, None, f"back to OK after {current.state}, which recipients were not told", clock
            )
        if settings.notify_on_recovery:
            return Transition(target, "recovered", f"back to OK after {current.state}", now)
        return Transition(target, None, f"back to OK after {current.state}, recovery notice off", clock)
    if target is not current.state or clock is None:
        return Transition(target, _PROBLEM_NOTICE[target], f"{current.state} → {target}", now)
    quiet_for = now - clock
    if quiet_for >= settings.rearm:
        reason = f"still {target}; last notice {quiet_for} ago ≥ re-arm {settings.rearm}"
        return Transition(target, _REPEAT_NOTICE[target], reason, now)
    return Transition(target, None, f"still {target}; re-arm in {settings.rearm - quiet_for}", clock)


def _checks_needed(state: AlertState, target: AlertState, settings: Settings) -> int:
    """How many checks in a row a move from ``state`` to ``target`` needs: the pending period applies to
    entering a breach and to leaving one; other moves (no data, errors) happen at once."""
    if target is AlertState.TRIGGERED and state is not AlertState.TRIGGERED:
        return settings.pending_checks
    if target is AlertState.OK and state is AlertState.TRIGGERED:
        return settings.recovery_checks
    return 1


def _target(observation: Observation, settings: Settings) -> AlertState | None:
    """The state an observation leads to under the policies; None keeps the current one."""
    if observation == "breached":
        return AlertState.TRIGGERED
    if observation == "ok":
        return AlertState.OK
    if observation not in ("no_data", "error"):
        raise ValueError(f"unknown observation {observation!r}")
    policy = settings.on_no_data if observation == "no_data" else settings.on_error
    if policy == "keep_last":
        return None
    if policy == "ok":
        return AlertState.OK
    return AlertState.NO_DATA if observation == "no_data" else AlertState.ERROR
