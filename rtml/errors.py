"""The base of every error rtml raises on purpose.

Each subpackage raises its own subclass with one sentence a learner can act on; the
CLI prints that sentence instead of a traceback.
"""


class RtmlError(Exception):
    """An error whose message says what went wrong and what to do about it."""


class ConfigError(RtmlError):
    """A setting (usually an RTML_* environment variable) is missing or invalid."""
