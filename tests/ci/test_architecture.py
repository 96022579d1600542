"""The package structure the README describes: core in the middle, dev helpers apart, images holding only what runs.

core <- training;  core <- inference client <- control service;  fixtures <- gitops;
dev helpers depend on everything, nothing on them.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PRODUCTION = {"polyp-core": "libs/core", "polyp-train": "training", "polyp-inference": "libs/inference",
              "polyp-control": "services/control", "polyp-gitops": "bootstrap/gitops", "polyp-fixtures": "libs/fixtures"}
ALLOWED_WORKSPACE_DEPENDENCIES = {
    "polyp-core": set(),
    "polyp-train": {"polyp-core"},
    "polyp-inference": {"polyp-core"},
    "polyp-control": {"polyp-core", "polyp-inference"},
    "polyp-gitops": {"polyp-fixtures"},
    "polyp-fixtures": set(),
}


def _lock(repo_root: Path) -> dict[str, dict]:
    return {p["name"]: p for p in tomllib.loads((repo_root / "uv.lock").read_text())["package"]}


def closure(lock: dict[str, dict], name: str) -> set[str]:
    """Every package `name` installs, itself excluded (extras included: the lock lists what they pull)."""
    seen, todo = set(), [name]
    while todo:
        package = lock[todo.pop()]
        deps = [d["name"] for d in package.get("dependencies", [])]
        for extra in package.get("optional-dependencies", {}).values():
            deps += [d["name"] for d in extra]
        for dep in deps:
            if dep not in seen and dep in lock:
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("package", sorted(PRODUCTION))
def test_workspace_dependencies_form_the_documented_tree(repo_root, package):
    lock = _lock(repo_root)
    workspace = {name for name in lock if name.startswith("polyp-")}
    assert closure(lock, package) & workspace == ALLOWED_WORKSPACE_DEPENDENCIES[package]


def test_core_and_training_install_no_web_framework_or_triton_client(repo_root):
    lock = _lock(repo_root)
    assert closure(lock, "polyp-core").isdisjoint({"fastapi", "tritonclient", "aiohttp", "torch", "ray"})
    assert "tritonclient" not in closure(lock, "polyp-train")


def _imported_packages(source: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(PRODUCTION))
def test_production_code_imports_only_what_it_declares(repo_root, package):
    """An import of a workspace package must be a declared dependency; polyp_dev never is."""
    allowed = {package.replace("-", "_")} | {d.replace("-", "_") for d in ALLOWED_WORKSPACE_DEPENDENCIES[package]}
    for source in (repo_root / PRODUCTION[package] / "src").rglob("*.py"):
        ours = {name for name in _imported_packages(source) if name.startswith("polyp_")}
        assert ours <= allowed, f"{source.relative_to(repo_root)} imports {sorted(ours - allowed)}"


def test_images_install_only_their_packages(repo_root):
    training = (repo_root / "training" / "Dockerfile").read_text()
    assert "--package polyp-train" in training and "--package polyp-core" in training
    assert "polyp-dev" not in training
    # The Ray Serve backend (charts/inference backend: rayserve) runs on this image: polyp-inference goes in
    # without its dependencies, so no Triton client or web framework comes with it.
    assert "--package polyp-inference -o /serving" in training
    assert "pip install --no-cache-dir --no-deps /tmp/serving/*.whl" in training
    assert "--package polyp-inference" not in training.split("uv export")[1].split("\n")[0]
    control = (repo_root / "services" / "control" / "Dockerfile").read_text()
    assert "--no-dev --no-editable --package polyp-control" in control and "polyp-dev" not in control
