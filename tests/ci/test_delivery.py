"""The delivery path: workflows pass actionlint, scripts shellcheck, Python ruff; Dockerfiles follow the rules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from polyp_gitops.tools import find_tool

DOCKERFILES = ["services/control/Dockerfile", "services/frontend/Dockerfile", "training/Dockerfile"]
WORKFLOWS = ["ci.yml", "images.yml", "promote.yml", "e2e-kind.yml"]


def test_workflows_pass_actionlint_with_shellcheck(repo_root):
    env_path = f"{repo_root / '.venv' / 'bin'}:{os.environ['PATH']}"
    assert shutil.which("shellcheck", path=env_path), "shellcheck (dev dependency) missing: actionlint would skip scripts"
    result = subprocess.run(
        [find_tool("actionlint")], cwd=repo_root, capture_output=True, text=True, env={**os.environ, "PATH": env_path}
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck(repo_root):
    shellcheck = repo_root / ".venv" / "bin" / "shellcheck"
    scripts = ["bootstrap/install.sh", "bootstrap/build-images.sh", "bootstrap/images/nginx-unprivileged.sh", ".ci/run"]
    result = subprocess.run([str(shellcheck), *scripts], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_python_passes_ruff(repo_root):
    """The lint job of ci.yml, here too, so `make test` fails where CI's lint would."""
    result = subprocess.run(
        [str(repo_root / ".venv" / "bin" / "ruff"), "check", "."], cwd=repo_root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", WORKFLOWS)
def test_actions_are_pinned_to_versions(repo_root, name):
    text = (repo_root / ".github" / "workflows" / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses
    for ref in uses:
        assert re.search(r"@(v\d+\.\d+\.\d+|[0-9a-f]{40})$", ref), f"{name}: {ref} is not pinned to a version"


def test_images_workflow_tags_by_sha_guards_loops_and_retries_the_push(repo_root):
    wf = yaml.safe_load((repo_root / ".github" / "workflows" / "images.yml").read_text())
    triggers = wf[True]  # YAML 1.1 reads the key `on` as True
    assert "environments/**" in triggers["push"]["paths-ignore"]
    assert wf["concurrency"]["cancel-in-progress"] is False
    build = wf["jobs"]["build"]
    assert "github-actions[bot]" in build["if"]
    push = next(s for s in build["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert push["with"]["tags"].endswith(":${{ github.sha }}")
    assert set(push["with"]["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert any(s.get("uses", "").startswith("docker/setup-qemu-action@") for s in build["steps"])
    bump = "\n".join(s.get("run", "") for s in wf["jobs"]["bump-dev"]["steps"])
    assert 'polyp-gitops bump --env dev --component "$component" --tag "$GITHUB_SHA"' in bump
    assert "git pull --rebase origin main" in bump


def test_prod_promotion_goes_through_a_pull_request(repo_root):
    text = (repo_root / ".github" / "workflows" / "promote.yml").read_text()
    assert "gh pr create" in text and 'if [ "$TO" = prod ]' in text


def _stages(text):
    return re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.M | re.I)


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfiles_are_multi_stage_pinned_and_non_root(repo_root, path):
    text = (repo_root / path).read_text()
    stages = _stages(text)
    assert len(stages) >= 2, f"{path}: not multi-stage"
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, flags=re.M))
    aliases = {alias for _, alias in stages if alias}
    for image, _ in stages:
        # A stage built FROM an earlier stage (the training image's per-architecture Ray base) pulls nothing.
        if any(image.replace("${TARGETARCH}", arch) in aliases for arch in ("amd64", "arm64")):
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{path}: {image} is not pinned"
    final = text[text.rindex("\nFROM") :]
    users = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path}: final stage runs as root"
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|ACCESS_KEY)", text, flags=re.M | re.I)


def test_dockerignore_keeps_local_state_out_of_images(repo_root):
    ignored = (repo_root / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".tools"} <= set(ignored)


def test_ci_resolves_the_pinned_fixtures_before_the_tests(repo_root):
    """GitHub has no ../shared: ci.yml fetches the manifest's fixtures (cached on the manifest) before
    `make test`, and no step points validation at an unpinned catalog instead."""
    text = (repo_root / ".github" / "workflows" / "ci.yml").read_text()
    steps = yaml.safe_load(text)["jobs"]["test"]["steps"]
    runs = [step.get("run", "").strip() for step in steps]
    assert runs.index("make fixtures") < runs.index("make test")
    cache = next(step for step in steps if step.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == ".cache/fixtures" and "manifest.toml" in cache["with"]["key"]
    assert "CRD_SCHEMA_LOCATION" not in text and "POLYP_CHARTS_DIR" not in text
