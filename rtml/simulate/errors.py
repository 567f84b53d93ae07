"""Errors of the transaction simulator."""

from rtml.errors import RtmlError


class SimulatorError(RtmlError):
    """The simulator was asked for something it cannot do (usually a bad parameter)."""
