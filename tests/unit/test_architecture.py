"""Dependencies point one way: rtml never imports the UI, notebooks, tests or a week module."""

import ast
from pathlib import Path

import rtml

FORBIDDEN = (
    "streamlit",
    "lab_app",
    "notebooks",
    "tests",
    "IPython",
    "ipykernel",
    "labs",
    "solutions",
)


def test_rtml_imports_no_ui_or_course_code():
    offenders = []
    for path in Path(rtml.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == [], "rtml reaches labs/solutions only through rtml.impl's loader"
