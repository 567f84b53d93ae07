"""Project files agree: environment.yml mirrors pyproject.toml; CI runs exactly `make test`."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    }
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    mirrored = {_name(r): r for r in pip if not r.startswith("-e")}
    assert mirrored == wanted


def test_ci_runs_make_test():
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "make test" in lines
    assert not any(line.startswith(("pytest", "python")) for line in lines)


def test_make_test_fails_when_pytest_collects_nothing():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-eq 5" in recipe and "exit 1" in recipe


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("```", 2)[1]
    commands = [line for line in setup.splitlines()[1:] if line.strip()]
    assert commands == ["make lab", "make test"]


def test_every_control_room_page_goes_through_home():
    # A pages/ folder beside Home.py would let a direct URL open its file before Home.py's
    # st.navigation runs, skipping the page config; so the pages live in views/.
    app = ROOT / "lab_app"
    assert not (app / "pages").exists()
    home = (app / "Home.py").read_text()
    listed = set(re.findall(r'st\.Page\("(views/\w+\.py)"', home))
    assert listed == {f"views/{p.name}" for p in (app / "views").glob("*.py")}
