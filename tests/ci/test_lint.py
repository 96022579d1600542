"""make lint's checkers are real: the type checker, with the project's settings, refuses a seeded wrong type and
a half-annotated function, and the lint target (which the pre-commit hook runs) runs every checker."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

SEEDED = """from polyp_core.job import TrainingParameters


def epochs(params: TrainingParameters) -> str:
    return params.epochs{fix}


def half(x: int, y{annotation}) -> int:
    return x // 2
"""


def _mypy(repo_root, source) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(repo_root / "pyproject.toml"), str(source)],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )


def test_the_type_checker_refuses_a_seeded_wrong_type(repo_root, tmp_path):
    seeded = tmp_path / "seeded.py"
    seeded.write_text(SEEDED.format(fix="", annotation=""))
    refused = _mypy(repo_root, seeded)
    assert refused.returncode == 1, refused.stdout
    assert 'Incompatible return value type (got "int", expected "str")  [return-value]' in refused.stdout
    assert "missing a type annotation for one or more parameters  [no-untyped-def]" in refused.stdout
    seeded.write_text(SEEDED.format(fix=".__str__()", annotation=": int"))  # the same file, typed right
    accepted = _mypy(repo_root, seeded)
    assert accepted.returncode == 0, accepted.stdout


def test_make_lint_runs_every_checker_and_pre_commit_runs_make_lint(repo_root):
    makefile = (repo_root / "Makefile").read_text()
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no lint target"
    for checker in ("ruff format --check .", "ruff check .", "mypy", "shellcheck", "actionlint", "test_schemas.py -k helm_docs"):
        assert checker in recipe.group(1), checker
    hooks = yaml.safe_load((repo_root / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    assert [hook["entry"] for hook in hooks] == ["make lint"]
    ci = yaml.safe_load((repo_root / ".github" / "workflows" / "ci.yml").read_text())
    assert any(step.get("run") == "make lint" for job in ci["jobs"].values() for step in job["steps"])
