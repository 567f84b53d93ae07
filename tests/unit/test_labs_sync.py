"""Labs and solutions stay in sync: same public functions, same signatures, TODO stubs."""

import ast
import importlib
import inspect
import pkgutil

import pytest

import labs
import solutions
from rtml.contracts import EXERCISES
from rtml.impl import exercise


def _modules(package) -> dict[str, object]:
    found = {}
    for week in pkgutil.iter_modules(package.__path__):
        week_pkg = importlib.import_module(f"{package.__name__}.{week.name}")
        for mod in pkgutil.iter_modules(week_pkg.__path__):
            name = f"{week.name}.{mod.name}"
            found[name] = importlib.import_module(f"{package.__name__}.{name}")
    return found


def _public_functions(module) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")
    }


def test_same_modules():
    assert set(_modules(labs)) == set(_modules(solutions))
    assert _modules(labs), "there should be at least one exercise module"


@pytest.mark.parametrize("name", sorted(_modules(labs)))
def test_same_functions_and_signatures(name):
    lab, sol = _modules(labs)[name], _modules(solutions)[name]
    assert _public_functions(lab) == _public_functions(sol)


@pytest.mark.parametrize("name", sorted(_modules(labs)))
def test_lab_functions_teach_and_stub(name):
    """Each lab function has a docstring; a stub raises NotImplementedError with a TODO hint."""
    module = _modules(labs)[name]
    tree = ast.parse(inspect.getsource(module))
    functions = [
        n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    ]
    assert functions
    for fn in functions:
        doc = ast.get_docstring(fn)
        assert doc and len(doc) > 80, f"{name}.{fn.name} needs a docstring that teaches"
        raises = [
            n
            for n in ast.walk(fn)
            if isinstance(n, ast.Raise)
            and isinstance(n.exc, ast.Call)
            and getattr(n.exc.func, "id", None) == "NotImplementedError"
        ]
        for r in raises:
            hint = r.exc.args[0] if r.exc.args else None
            assert isinstance(hint, ast.Constant) and "TODO" in str(hint.value), (
                f"{name}.{fn.name}: NotImplementedError needs a 'TODO ...' hint"
            )


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.qualname)
def test_every_exercise_matches_its_contract(ex):
    """Both implementations exist with the contract's signature; the solution answers it."""
    contract = inspect.signature(ex.contract.__call__)
    want = [p for p in contract.parameters.values() if p.name != "self"]
    for impl in ("labs", "solutions"):
        got = list(inspect.signature(exercise(ex.name, impl)).parameters.values())
        assert [p.name for p in got] == [p.name for p in want], impl
    assert isinstance(exercise(ex.name, "solutions")(*ex.example), ex.returns)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.qualname)
def test_lab_stub_or_answer(ex):
    """A lab exercise either still raises NotImplementedError with a hint, or answers in type."""
    try:
        result = exercise(ex.name, "labs")(*ex.example)
    except NotImplementedError as exc:
        assert "TODO" in str(exc)
    else:
        assert isinstance(result, ex.returns)
