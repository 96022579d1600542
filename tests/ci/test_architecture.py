"""The architecture by folder: where a package lives says what it may use (see each folder's README).

    libs/core            the contract between training and serving: imports nothing of ours
    libs/*               production libraries (the inference client, the GitOps CLI): libs/core
    services/*, training deployed programs: libs
    dev/*                development and tests only: anything; nothing outside dev/ uses it

A package may import, and depend on, only packages of a lower layer (dev/ packages also each other).
Images hold only what they run.
"""

from __future__ import annotations

import ast
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

LAYER_OF_FOLDER = {"libs/core": 0, "libs": 1, "services": 2, "training": 2, "dev": 3}


@dataclass(frozen=True)
class Package:
    name: str  # distribution name, polyp-core
    folder: str  # workspace member, libs/core

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def layer(self) -> int:
        return LAYER_OF_FOLDER.get(self.folder, LAYER_OF_FOLDER[self.folder.split("/")[0]])


def may_use(user: Package, used: Package) -> bool:
    return used.layer < user.layer or used.layer == user.layer == LAYER_OF_FOLDER["dev"]


def workspace(repo_root: Path) -> dict[str, Package]:
    """Every workspace member, by module name, read from the root pyproject.toml and each member's."""
    members = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    packages = {}
    for folder in members:
        name = tomllib.loads((repo_root / folder / "pyproject.toml").read_text())["project"]["name"]
        packages[name.replace("-", "_")] = Package(name, folder)
    return packages


def _imported_packages(source: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def upward_imports(repo_root: Path) -> list[str]:
    """Every import in a package's src/ of a workspace package not below it: "file imports module (layer)"."""
    packages = workspace(repo_root)
    found = []
    for package in packages.values():
        for source in sorted((repo_root / package.folder / "src").rglob("*.py")):
            for module in sorted(_imported_packages(source) & packages.keys() - {package.module}):
                if not may_use(package, packages[module]):
                    found.append(f"{source.relative_to(repo_root)} imports {module} ({packages[module].folder})")
    return found


def _lock(repo_root: Path) -> dict[str, dict]:
    return {p["name"]: p for p in tomllib.loads((repo_root / "uv.lock").read_text())["package"]}


def closure(lock: dict[str, dict], name: str) -> set[str]:
    """Every package `name` installs, itself excluded: dependencies and the extras they ask for."""
    seen: set[str] = set()
    todo = [(name, ())]
    while todo:
        package_name, extras = todo.pop()
        package = lock[package_name]
        deps = list(package.get("dependencies", []))
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            if dep["name"] in lock and (dep["name"], tuple(dep.get("extra", ()))) not in seen:
                seen.add((dep["name"], tuple(dep.get("extra", ()))))
                todo.append((dep["name"], tuple(dep.get("extra", ()))))
    return {dep for dep, _ in seen} - {name}


def test_no_package_imports_its_own_layer_or_one_above(repo_root):
    assert upward_imports(repo_root) == []


def test_an_upward_import_is_caught(repo_root, tmp_path):
    """The check itself: a copy of the workspace with one seeded import of the control service into the core."""
    shutil.copy(repo_root / "pyproject.toml", tmp_path)
    for package in workspace(repo_root).values():
        shutil.copytree(
            repo_root / package.folder, tmp_path / package.folder, ignore=shutil.ignore_patterns("tests", "__pycache__")
        )
    seeded = tmp_path / "libs" / "core" / "src" / "polyp_core" / "seeded.py"
    seeded.write_text("from polyp_control.settings import Settings\n")
    (tmp_path / "libs" / "inference" / "src" / "polyp_inference" / "seeded.py").write_text("import polyp_train\n")
    assert upward_imports(tmp_path) == [
        "libs/core/src/polyp_core/seeded.py imports polyp_control (services/control)",
        "libs/inference/src/polyp_inference/seeded.py imports polyp_train (training)",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "polyp-core",
        "polyp-inference",
        "polyp-gitops",
        "polyp-control",
        "polyp-rayserve",
        "polyp-train",
        "polyp-dev",
        "polyp-fixtures",
    ],
)
def test_workspace_dependencies_point_down_the_layers(repo_root, name):
    packages = {p.name: p for p in workspace(repo_root).values()}
    ours = closure(_lock(repo_root), name) & packages.keys()
    upward = {dep for dep in ours if not may_use(packages[name], packages[dep])}
    assert not upward, f"{name} ({packages[name].folder}) depends on {sorted(upward)}"


def test_production_packages_install_nothing_of_dev(repo_root):
    packages = {p.name: p for p in workspace(repo_root).values()}
    dev = {name for name, p in packages.items() if p.folder.startswith("dev/")}
    lock = _lock(repo_root)
    for name in packages.keys() - dev:
        assert closure(lock, name).isdisjoint(dev), name


def test_core_training_and_rayserve_install_no_triton_client(repo_root):
    lock = _lock(repo_root)
    assert closure(lock, "polyp-core").isdisjoint({"fastapi", "tritonclient", "aiohttp", "torch", "ray"})
    for name in ("polyp-train", "polyp-rayserve"):
        assert "tritonclient" not in closure(lock, name), name
    # The library's base is the in-process backend; the remote clients and the router are extras the control service asks for.
    assert closure(lock, "polyp-inference").isdisjoint({"tritonclient", "fastapi", "aiohttp"})
    assert {"tritonclient", "fastapi", "python-multipart"} <= closure(lock, "polyp-control")


def test_images_install_only_their_packages(repo_root):
    training = (repo_root / "training" / "Dockerfile").read_text()
    assert "--package polyp-train --package polyp-rayserve" in training
    assert "polyp-dev" not in training and "polyp-control" not in training
    # The Ray Serve backend (charts/inference backend: rayserve) runs on this image: the application and its
    # libraries are installed from the lock's requirements, no client extras.
    assert "for package in polyp-train polyp-core polyp-inference polyp-rayserve" in training
    assert "polyp-inference[" not in training
    control = (repo_root / "services" / "control" / "Dockerfile").read_text()
    assert "--no-dev --no-editable --package polyp-control" in control and "polyp-dev" not in control
