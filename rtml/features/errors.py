"""Errors of the feature application, each a sentence a learner can act on."""

from rtml.errors import RtmlError


class FeatureError(RtmlError):
    """The feature app cannot start or a feature computation got input it cannot use."""
