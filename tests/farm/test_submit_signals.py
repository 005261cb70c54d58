"""A signal that reaches ``farm submit`` while Redis runs one of its claims waits for the claim's reply.

Otherwise the claim is done in Redis but not yet noted as the submit's own, so the interrupted submit cannot
give those jobs back and a re-run waits ``SEND_LEASE_S`` for them (seen in CI: 1,000 debts left ``paying``)."""

from __future__ import annotations

import os
import signal

import pytest

from farm.submit import Stop, _held, restore_signals, stop_on_signals


@pytest.fixture
def handlers():
    previous = stop_on_signals()
    yield
    restore_signals(previous)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_held_step_stops_the_submit_once_the_step_is_done(handlers, sig: int) -> None:
    done: list[str] = []
    with pytest.raises(Stop) as stopped, _held():
        os.kill(os.getpid(), sig)
        done.append("claimed and noted")
    assert done == ["claimed and noted"]
    assert stopped.value.args == (sig,)


def test_a_signal_outside_a_held_step_stops_the_submit_at_once(handlers) -> None:
    done: list[str] = []
    with pytest.raises(Stop):
        os.kill(os.getpid(), signal.SIGINT)
        done.append("not reached")
    assert done == []


def test_nested_holds_stop_only_when_the_outer_one_ends(handlers) -> None:
    done: list[str] = []
    with pytest.raises(Stop), _held():
        with _held():
            os.kill(os.getpid(), signal.SIGTERM)
        done.append("outer step finished")
    assert done == ["outer step finished"]


def test_no_signal_no_stop(handlers) -> None:
    with _held():
        pass
