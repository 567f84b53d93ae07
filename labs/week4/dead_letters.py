"""Week 4 exercise: retry what may pass next time, dead-letter what never will.

When a stage's handler fails on a record, the stage (`rtml.stage.Stage`) must choose:

- **retry**: the failure is *transient*, the same record may well succeed a moment later
  (a dependency timed out, a connection dropped, the schema registry did not answer). The
  stage waits (exponential backoff: 50 ms, 100 ms, 200 ms, ...) and tries again;
- **dead-letter**: the record itself is the problem (it does not decode, a field is
  missing or out of range, a bug). Retrying would fail the same way forever and block
  every record behind it, so the stage writes it unchanged to its dead-letter topic
  (`cards.dlq`, ...) with headers saying where it came from and why it failed, and moves
  on. Someone reads it later (`rtml dlq show`), fixes the cause, and redrives it.

A transient failure cannot be retried forever either: after `retries` retries the
dependency is presumably down for longer, and the record goes to the DLQ too (to be
redriven once the dependency is back).

Every week-4 stage (the decision, card and notification services) asks this function
after each failed attempt: with RTML_IMPL=labs your function makes the call.
"""

from __future__ import annotations


def route_failure(error: BaseException, attempts: int, retries: int) -> str:
    """Return "retry" or "dead-letter" for a record whose handling just failed with `error`.

    `attempts` counts the attempts made so far, this failed one included (1 after the
    first), and `retries` is how many attempts the stage may make after the first. So:

    - a transient error, `rtml.stage.Transient` or `TimeoutError` or `ConnectionError`
      (their subclasses included), with `attempts <= retries`: "retry";
    - a transient error that has used up its retries: "dead-letter";
    - any other error, at any attempt: "dead-letter".

    Example: TimeoutError("slow"), attempts 1, retries 3 -> "retry"; the same error at
    attempts 4 -> "dead-letter" (1 attempt + 3 retries made); ValueError("amount < 0"),
    attempts 1 -> "dead-letter".

    Think about:
    - `isinstance(error, (A, B, C))` checks several types at once, subclasses included
      (`ConnectionRefusedError` is a `ConnectionError`).
    - With `retries` 0, nothing is ever retried.
    - Why not retry a `ValueError` "just in case"? What happens to the records behind it
      in the same partition while it is retried?
    """
    raise NotImplementedError(
        'TODO week 4: "retry" for a transient error (Transient, TimeoutError, '
        'ConnectionError) with attempts <= retries, else "dead-letter"'
    )
