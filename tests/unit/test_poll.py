"""Waiting for a condition with a deadline: the value it returns, the sentence when it times out."""

import time

import pytest

from rtml.errors import RtmlError
from rtml.poll import WaitTimeout, until


def test_until_returns_the_first_truthy_result():
    answers = iter([0, None, [], "ready", "later"])
    assert until(lambda: next(answers), timeout=5, what="x", interval=0.01) == "ready"


def test_until_names_what_it_waited_for_after_the_deadline():
    calls = []
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"^Timed out after 0.2 s waiting for the moon\.$"):
        until(lambda: calls.append(1), timeout=0.2, what="the moon", interval=0.05)
    assert 0.2 <= time.monotonic() - started < 2
    assert len(calls) >= 3  # polled, not slept through
    assert issubclass(WaitTimeout, RtmlError)  # the CLI prints its sentence
