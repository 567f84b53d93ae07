"""Observability: throughput per topic, consumer lag and whether it is a problem, live tails."""

from rtml.config import Settings


def no_broker(settings: Settings) -> str:
    """The sentence for a cluster that does not answer, with what to do about it."""
    hint = (
        "start it with `rtml cluster up` (or `make lab`)."
        if settings.local
        else "check RTML_BOOTSTRAP_SERVERS and the security settings."
    )
    return f"No broker answers at {settings.bootstrap}: {hint}"
