"""The threshold alert state machine: notices on change, re-arm, recovery, no-data and error policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi_alerts.conditions.threshold_state import (
    AlertState,
    ErrorPolicy,
    NoDataPolicy,
    Notice,
    Observation,
    Settings,
    StoredState,
    Transition,
    decide,
)

T0 = datetime(2026, 11, 24, 9, tzinfo=UTC)
H = timedelta(hours=1)
OK, TRIGGERED, NO_DATA, ERROR = AlertState.OK, AlertState.TRIGGERED, AlertState.NO_DATA, AlertState.ERROR


def run(
    steps: list[tuple[timedelta, Observation]],
    config: Settings | None = None,
    stored: StoredState | None = None,
) -> list[tuple[AlertState, Notice | None]]:
    """Feed observations at T0 + offset, persisting each decision as the pipeline does."""
    config = config or Settings()
    out = []
    for offset, observation in steps:
        transition = decide(stored, observation, now=T0 + offset, settings=config)
        stored = transition.stored
        out.append((transition.new_state, transition.notify))
    return out


class TestSequences:
    def test_brief_example(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [
            (0 * H, "ok"),
            (1 * H, "breached"),
            (2 * H, "breached"),  # +1 h: within re-arm
            (6 * H, "breached"),  # +5 h since the notice: re-armed
            (7 * H, "ok"),
            (8 * H, "ok"),
            (9 * H, "breached"),
        ]
        assert [notice for _, notice in run(steps)] == [
            None,
            "triggered",
            None,
            "still_triggered",
            "recovered",
            None,
            "triggered",
        ]

    def test_rearm_counts_from_the_last_notice(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [(k * H, "breached") for k in range(10)]
        notices = [notice for _, notice in run(steps)]
        assert notices == [
            "triggered",
            None,
            None,
            None,
            "still_triggered",
            None,
            None,
            None,
            "still_triggered",
            None,
        ]

    def test_rearm_boundary_is_inclusive(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [
            (0 * H, "breached"),
            (4 * H - timedelta(seconds=1), "breached"),
        ]
        assert run(steps)[-1] == (TRIGGERED, None)
        steps[-1] = (4 * H, "breached")
        assert run(steps)[-1] == (TRIGGERED, "still_triggered")

    def test_zero_rearm_repeats_every_evaluation(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [(k * H, "breached") for k in range(3)]
        assert run(steps, Settings(rearm=timedelta(0))) == [
            (TRIGGERED, "triggered"),
            (TRIGGERED, "still_triggered"),
            (TRIGGERED, "still_triggered"),
        ]

    def test_recovery_notice_can_be_turned_off(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [(0 * H, "breached"), (1 * H, "ok"), (2 * H, "breached")]
        assert run(steps, Settings(notify_on_recovery=False)) == [
            (TRIGGERED, "triggered"),
            (OK, None),
            (TRIGGERED, "triggered"),
        ]

    def test_first_evaluation_starts_from_ok(self) -> None:
        assert run([(0 * H, "ok")]) == [(OK, None)]
        assert run([(0 * H, "breached")]) == [(TRIGGERED, "triggered")]

    def test_unsent_notice_is_decided_again(self) -> None:
        """The pipeline persists a transition only after delivery: a failed send is retried next time."""
        first = decide(None, "breached", now=T0, settings=Settings())
        again = decide(None, "breached", now=T0 + H, settings=Settings())  # nothing was stored
        assert (first.notify, again.notify) == ("triggered", "triggered")
        # a TRIGGERED state stored without any notice (e.g. by hand) still gets its first notice
        assert decide(StoredState(TRIGGERED), "breached", now=T0, settings=Settings()).notify == "triggered"

    def test_stored_state_keeps_the_clock_when_quiet(self) -> None:
        transition = decide(StoredState(TRIGGERED, T0), "breached", now=T0 + H, settings=Settings())
        assert transition.stored == StoredState(TRIGGERED, T0)
        assert transition.reason == "still TRIGGERED; re-arm in 3:00:00"

    def test_settings_refuse_negative_rearm(self) -> None:
        with pytest.raises(ValueError, match="rearm"):
            Settings(rearm=-H)

    def test_unknown_observation_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown observation 'weird'"):
            decide(None, "weird", now=T0, settings=Settings())  # type: ignore[arg-type]

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            decide(None, "ok", now=datetime(2026, 1, 1), settings=Settings())


POLICY_CASES = [
    # stored state, observation, settings, expected (state, notice)
    pytest.param(OK, "no_data", Settings(), (OK, None), id="no-data-keep-last-from-ok"),
    pytest.param(TRIGGERED, "no_data", Settings(), (TRIGGERED, None), id="no-data-keep-last-from-triggered"),
    pytest.param(
        OK,
        "no_data",
        Settings(on_no_data=NoDataPolicy.ALERT),
        (NO_DATA, "no_data"),
        id="no-data-alert-enters",
    ),
    pytest.param(
        TRIGGERED,
        "no_data",
        Settings(on_no_data=NoDataPolicy.ALERT),
        (NO_DATA, "no_data"),
        id="no-data-alert-from-triggered",
    ),
    pytest.param(
        TRIGGERED,
        "no_data",
        Settings(on_no_data=NoDataPolicy.OK),
        (OK, "recovered"),
        id="no-data-as-ok-recovers",
    ),
    pytest.param(
        OK, "no_data", Settings(on_no_data=NoDataPolicy.OK), (OK, None), id="no-data-as-ok-stays-ok"
    ),
    pytest.param(OK, "error", Settings(), (ERROR, "error"), id="error-alert-default"),
    pytest.param(TRIGGERED, "error", Settings(), (ERROR, "error"), id="error-alert-from-triggered"),
    pytest.param(
        TRIGGERED,
        "error",
        Settings(on_error=ErrorPolicy.KEEP_LAST),
        (TRIGGERED, None),
        id="error-keep-last",
    ),
    pytest.param(TRIGGERED, "error", Settings(on_error=ErrorPolicy.OK), (OK, "recovered"), id="error-as-ok"),
    pytest.param(ERROR, "ok", Settings(), (OK, None), id="error-then-ok-is-not-news-to-recipients"),
    pytest.param(NO_DATA, "ok", Settings(), (OK, "recovered"), id="no-data-then-ok-recovers"),
    pytest.param(NO_DATA, "ok", Settings(notify_on_recovery=False), (OK, None), id="no-data-recovery-off"),
    pytest.param(NO_DATA, "breached", Settings(), (TRIGGERED, "triggered"), id="no-data-then-breach"),
    pytest.param(ERROR, "breached", Settings(), (TRIGGERED, "triggered"), id="error-then-breach"),
]


class TestPolicies:
    @pytest.mark.parametrize(("state", "observation", "config", "expected"), POLICY_CASES)
    def test_transition(
        self,
        state: AlertState,
        observation: Observation,
        config: Settings,
        expected: tuple[AlertState, Notice | None],
    ) -> None:
        transition = decide(StoredState(state, T0 - H), observation, now=T0, settings=config)
        assert (transition.new_state, transition.notify) == expected
        assert transition.reason

    @pytest.mark.parametrize(
        ("observation", "config", "state", "notice"),
        [
            pytest.param(
                "no_data", Settings(on_no_data=NoDataPolicy.ALERT), NO_DATA, "no_data", id="no-data"
            ),
            pytest.param("error", Settings(on_error=ErrorPolicy.ALERT), ERROR, "error", id="error"),
        ],
    )
    def test_problem_states_are_rearmed(
        self, observation: Observation, config: Settings, state: AlertState, notice: Notice
    ) -> None:
        steps: list[tuple[timedelta, Observation]] = [(k * H, observation) for k in range(6)] + [
            (6 * H, "ok")
        ]
        assert run(steps, config) == [
            (state, notice),
            (state, None),
            (state, None),
            (state, None),
            (state, notice),
            (state, None),
            (OK, "recovered" if state is NO_DATA else None),
        ]

    def test_an_undelivered_error_notice_never_causes_a_recovery_notice(self) -> None:
        """A caller may record ERROR without e-mailing it; recipients must not then hear "recovered"."""
        assert run([(0 * H, "breached"), (1 * H, "ok")]) == [(TRIGGERED, "triggered"), (OK, "recovered")]
        error = decide(StoredState(OK, T0 + H), "error", now=T0 + 2 * H, settings=Settings())
        assert error.notify == "error"
        unsent = StoredState(error.new_state, T0 + H)  # persisted with the old clock, notice not sent
        assert decide(unsent, "ok", now=T0 + 3 * H, settings=Settings()).notify is None

    def test_keep_last_never_notifies_and_keeps_the_rearm_clock(self) -> None:
        steps: list[tuple[timedelta, Observation]] = [
            (0 * H, "breached"),
            (1 * H, "no_data"),
            (4 * H, "breached"),
        ]
        assert run(steps) == [(TRIGGERED, "triggered"), (TRIGGERED, None), (TRIGGERED, "still_triggered")]


# --- properties --------------------------------------------------------------------------------

OBSERVATIONS = st.sampled_from(["breached", "ok", "no_data", "error"])
SETTINGS = st.builds(
    Settings,
    rearm=st.integers(0, 600).map(lambda m: timedelta(minutes=m)),
    notify_on_recovery=st.booleans(),
    on_no_data=st.sampled_from(NoDataPolicy),
    on_error=st.sampled_from(ErrorPolicy),
    pending_checks=st.integers(1, 4),
    recovery_checks=st.integers(1, 4),
)
STEPS = st.lists(
    st.tuples(st.integers(1, 300).map(lambda m: timedelta(minutes=m)), OBSERVATIONS), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(SETTINGS, STEPS)
def test_no_spam_and_recovery_only_after_a_notice(
    config: Settings, steps: list[tuple[timedelta, str]]
) -> None:
    stored: StoredState | None = None
    now = T0
    last_notice_in_state: datetime | None = None
    problem_notified = False  # a notice went out since the state was last OK
    for gap, observation in steps:
        now += gap
        before = stored.state if stored else OK
        transition: Transition = decide(stored, observation, now=now, settings=config)  # type: ignore[arg-type]
        after, notice = transition.new_state, transition.notify
        if after is not before:
            last_notice_in_state = None
        if notice in ("triggered", "still_triggered", "no_data", "error"):
            assert after is not OK
            if last_notice_in_state is not None:  # same episode: re-arm respected
                assert notice != "triggered"
                assert now - last_notice_in_state >= config.rearm
            last_notice_in_state = now
            problem_notified = True
        if notice == "triggered":
            assert after is TRIGGERED
        if before is OK and after is TRIGGERED:
            assert notice == "triggered"  # a breach is never missed
        if notice == "recovered":
            assert config.notify_on_recovery and after is OK and before in (TRIGGERED, NO_DATA)
            assert problem_notified
        if after is OK:
            problem_notified = False
        if observation == "breached" and before is TRIGGERED and notice is None:
            assert last_notice_in_state is not None  # a standing breach is quiet only while re-arm runs
            assert now - last_notice_in_state < config.rearm
        stored = transition.stored


@settings(max_examples=300, deadline=None)
@given(SETTINGS, STEPS)
def test_pending_period_counts_checks_in_a_row(config: Settings, steps: list[tuple[timedelta, str]]) -> None:
    """TRIGGERED is entered only on the pending_checks-th breached check in a row, and left for OK only on
    the recovery_checks-th OK one; a check the policies ignore (keep_last) neither counts nor breaks the
    run. The run is counted here independently of the stored streak."""
    stored: StoredState | None = None
    now = T0
    run_length = 0  # checks in a row pointing away from the state, as this test counts them
    for gap, observation in steps:
        now += gap
        before = stored.state if stored else OK
        policy = {"no_data": config.on_no_data, "error": config.on_error}.get(observation)
        ignored = policy == "keep_last"
        means = "ok" if policy == "ok" else observation  # the "ok" policy reads a check as OK
        away = (means == "breached" and before is not TRIGGERED) or (means == "ok" and before is TRIGGERED)
        if not ignored:
            run_length = run_length + 1 if away else 0
        transition: Transition = decide(stored, observation, now=now, settings=config)  # type: ignore[arg-type]
        after = transition.new_state
        if after is TRIGGERED and before is not TRIGGERED:
            assert run_length == config.pending_checks
        if before is TRIGGERED and after is OK:
            assert run_length == config.recovery_checks
        if away and not ignored and after is before:
            needed = config.pending_checks if means == "breached" else config.recovery_checks
            assert run_length < needed and transition.notify is None
            assert transition.streak == run_length
        if after is not before:
            run_length = 0
        stored = transition.stored


class TestPendingPeriod:
    def test_notify_on_the_third_breach_in_a_row_recover_on_the_second_ok(self) -> None:
        config = Settings(pending_checks=3, recovery_checks=2)
        steps: list[tuple[timedelta, Observation]] = [
            (H * i, o)
            for i, o in enumerate(["breached", "breached", "ok", "breached", "breached", "breached", "ok",
                                   "breached", "ok", "ok", "ok"])
        ]  # fmt: skip
        assert run(steps, config) == [
            (OK, None),
            (OK, None),
            (OK, None),  # the run of breaches is broken
            (OK, None),
            (OK, None),
            (TRIGGERED, "triggered"),  # third in a row
            (TRIGGERED, None),  # OK 1 of 2
            (TRIGGERED, None),  # a breach breaks the recovery run (re-arm not yet due)
            (TRIGGERED, None),
            (OK, "recovered"),
            (OK, None),
        ]

    def test_the_reason_says_how_far_the_pending_period_is(self) -> None:
        transition = decide(None, "breached", now=T0, settings=Settings(pending_checks=3))
        assert transition.streak == 1
        assert transition.reason == "breached 1 of 3 checks in a row: still OK (pending)"

    def test_ignored_checks_keep_the_run(self) -> None:
        config = Settings(pending_checks=2, on_no_data=NoDataPolicy.KEEP_LAST)
        assert run([(H * 0, "breached"), (H, "no_data"), (H * 2, "breached")], config)[-1] == (
            TRIGGERED,
            "triggered",
        )

    def test_no_data_alerting_is_not_delayed(self) -> None:
        config = Settings(pending_checks=3, on_no_data=NoDataPolicy.ALERT)
        assert run([(H * 0, "no_data")], config) == [(NO_DATA, "no_data")]

    @pytest.mark.parametrize("field", ["pending_checks", "recovery_checks"])
    def test_at_least_one_check(self, field: str) -> None:
        with pytest.raises(ValueError, match="1 or more"):
            Settings(**{field: 0})  # type: ignore[arg-type]
