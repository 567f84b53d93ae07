"""The chaos page and the terminal verdict, from a made-up result (no broker)."""

from bench.chaos import INTRO, publish
from bench.report import Machine
from rtml.chaos import ChaosResult, Check, Event, Resume, Verdict
from rtml.chaos.cli import render

FACTS = Machine(2, "cpu", 24.0, "Debian", "3.11", "25", "4.1.1", "3 nodes")


def _result(lost: int = 0) -> ChaosResult:
    return ChaosResult(
        scenario="leader-kill",
        topic="chaos-leader-kill-x",
        rate=None,
        produced=1000,
        seconds=12.5,
        verdict=Verdict(1000, 1000 - lost, lost, 0, 0, 0, lost_ids=tuple(range(lost))),
        checks=(Check("broker 2 back in every ISR", True),),
        resumes=(Resume("SIGKILL broker 2", 9.5),),
        timeline=(Event(1.0, "step", "SIGKILL broker 2"), Event(10.5, "check", "resumed")),
    )


def test_terminal_verdict_says_passed_or_failed_and_names_lost_ids():
    text = render(_result())
    assert text.startswith("Scenario leader-kill: PASSED")
    assert "time to resume after SIGKILL broker 2: 9.50 s" in text
    failed = render(_result(lost=2))
    assert "FAILED" in failed and "lost ids (first): 0, 1" in failed


def test_page_gets_the_intro_a_summary_row_and_the_timeline_and_keeps_other_sections(tmp_path):
    page = tmp_path / "reliability.md"
    publish([_result()], FACTS, "make chaos", "load average 1.0", page)
    text = page.read_text()
    assert text.startswith(INTRO)
    assert "| [leader-kill](#leader-kill) | PASS | 1,000 | 1,000 | 0 | 0 | 0 | 9.5 s |" in text
    assert "   1.00 s  step       SIGKILL broker 2" in text
    assert "**Machine load**: load average 1.0" in text
    # A later run of the same scenario replaces its section and leaves the rest.
    page.write_text(text + "\nA note kept by hand.\n")
    publish([_result(lost=3)], FACTS, "make chaos", "load average 2.0", page)
    again = page.read_text()
    assert again.count("## leader-kill") == 1 and "**FAIL**" in again
    assert "A note kept by hand." in again


def test_cli_exits_1_when_anything_acknowledged_was_lost(monkeypatch, capsys):
    from rtml import cli
    from rtml.chaos import scenarios

    def fake_run(name, settings, *, records, seconds, rate, on_event):
        on_event(Event(1.0, "step", "SIGKILL broker 2"))
        return _result(lost=1 if records == 500 else 0)

    monkeypatch.setattr(scenarios, "run", fake_run)
    assert cli.main(["chaos", "run", "leader-kill", "--records", "500"]) == 1
    out = capsys.readouterr().out
    assert "SIGKILL broker 2" in out and "FAILED" in out
    assert cli.main(["chaos", "run", "leader-kill", "--records", "600"]) == 0
    assert cli.main(["chaos", "list"]) == 0
    assert "two-down-timeout" in capsys.readouterr().out
