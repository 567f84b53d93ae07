"""The one loader that picks the learner's labs or the reference solutions.

RTML_IMPL=labs runs the learner's code everywhere the system calls an exercise seam;
the default, solutions, runs the reference answers.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rtml.config import IMPLS, Settings
from rtml.contracts import EXERCISES, Exercise, ExerciseFn
from rtml.errors import ConfigError


def load_module(week: int, module: str, impl: str | None = None) -> ModuleType:
    """Import `labs.weekN.module` or `solutions.weekN.module`."""
    impl = impl or Settings.from_env().impl
    if impl not in IMPLS:
        raise ConfigError(f"impl={impl!r} is not valid: use 'labs' or 'solutions'.")
    return importlib.import_module(f"{impl}.week{week}.{module}")


def find(name: str) -> Exercise:
    """The exercise called `name` (for example 'partition_key')."""
    for ex in EXERCISES:
        if ex.name == name:
            return ex
    known = ", ".join(ex.name for ex in EXERCISES)
    raise ConfigError(f"There is no exercise {name!r}; the exercises are: {known}.")


def exercise(name: str, impl: str | None = None) -> ExerciseFn:
    """The function that implements exercise `name` in the chosen implementation."""
    ex = find(name)
    return getattr(load_module(ex.week, ex.module, impl), ex.name)
