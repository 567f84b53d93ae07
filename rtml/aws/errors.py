"""The errors of rtml.aws: one sentence a learner can act on."""

from __future__ import annotations

from rtml.errors import RtmlError


class AwsError(RtmlError):
    """The local AWS emulator (moto) is not running, or a call to it failed."""
