"""Errors of the prediction service, each a sentence a learner can act on."""

from rtml.errors import RtmlError


class ServeError(RtmlError):
    """The prediction service cannot start, or lost its connection to the cluster."""
