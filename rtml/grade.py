"""Grade a week's exercises: run its grading tests against labs/ and report per exercise.

Grading tests live in tests/grading/weekN/test_<exercise>.py; each test's docstring is the
check a learner reads. The tests load the implementation through `rtml.impl`, so running
them with RTML_IMPL=labs grades the learner's code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rtml.config import project_root
from rtml.errors import RtmlError


class GradeError(RtmlError):
    """The grading tests could not be run."""


@dataclass(frozen=True)
class Check:
    """One grading check: which exercise, what it checks, and whether it passed."""

    exercise: str
    description: str
    passed: bool
    detail: str = ""


@dataclass
class GradeResult:
    """Every check of one week's grading, for one implementation."""

    week: str
    impl: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when there were checks and all of them passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def render(self) -> str:
        """The result as lines per exercise, for the terminal."""
        lines = [f"Grading {self.week} ({self.impl}/)"]
        current = None
        for c in self.checks:
            if c.exercise != current:
                current = c.exercise
                lines.append(f"\n  {current}")
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"    [{mark}] {c.description}")
            if c.detail:
                lines.append(f"           {c.detail}")
        done = sum(c.passed for c in self.checks)
        lines.append(f"\n{done} of {len(self.checks)} checks pass.")
        if not self.passed:
            lines.append("Fix the first FAIL, then run the grader again.")
        return "\n".join(lines)


class _Collector:
    """A pytest plugin that keeps one `Check` per grading test."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.when != "call" and not report.failed:
            return
        exercise = Path(str(item.fspath)).stem.removeprefix("test_")
        doc = (getattr(item.obj, "__doc__", None) or item.name).strip().splitlines()[0]
        detail = ""
        if call.excinfo is not None:
            exc = call.excinfo.value
            detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        self.checks.append(Check(exercise, doc, report.passed, detail if report.failed else ""))


def grade(week: str, impl: str = "labs") -> GradeResult:
    """Run tests/grading/<week> against `impl` and return one result per check."""
    folder = project_root() / "tests" / "grading" / week
    if not folder.is_dir():
        raise GradeError(
            f"No grading tests for {week} at {folder}: run rtml from the project checkout."
        )
    collector = _Collector()
    previous = os.environ.get("RTML_IMPL")
    os.environ["RTML_IMPL"] = impl
    try:
        code = pytest.main(
            [str(folder), "-p", "no:terminal", "-p", "no:cacheprovider", "-o", "addopts="],
            plugins=[collector],
        )
    finally:
        if previous is None:
            os.environ.pop("RTML_IMPL", None)
        else:
            os.environ["RTML_IMPL"] = previous
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or not collector.checks:
        raise GradeError(f"No grading tests were found for {week} in {folder}.")
    return GradeResult(week, impl, collector.checks)
