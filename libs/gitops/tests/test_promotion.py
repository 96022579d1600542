"""bump / pin-model / diff / promote on a temporary git repository holding this repo's environment files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polyp_gitops import promotion
from polyp_gitops.git import GitError
from polyp_gitops.pins import MODEL_COMPONENT, MODEL_SHA256, MODEL_VERSION, Pin, PinError, own_images, rewrite
from polyp_gitops.repo import ENVIRONMENTS, own_charts

REPO_ROOT = Path(__file__).resolve().parents[3]
SHA = "3f9c2a1b7d4e5f60718293a4b5c6d7e8f9012345"
DIGEST = "3f" * 32
FIRST_DIGEST = "0a" * 32  # version 1's, in every environment of the fixture repository


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    for rel in [
        "apps/Chart.yaml",
        "apps/values.yaml",
        "environments",
        *[f"charts/{c}/values.yaml" for c in own_charts(REPO_ROOT)],
    ]:
        src, dst = REPO_ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    # As after a first promotion: every environment serves version 1 by its digest (a fresh clone's staging and
    # prod pin none yet, and a digest-less pin cannot reach them: test_staging_and_prod_take_a_model_only_with_its_digest).
    first = {Pin(MODEL_COMPONENT, MODEL_VERSION): "1", Pin(MODEL_COMPONENT, MODEL_SHA256): FIRST_DIGEST}
    for env in ENVIRONMENTS:
        path = tmp_path / "environments" / env / "values.yaml"
        path.write_text(rewrite(path.read_text(), env, first))
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "ci@example.com")
    git(tmp_path, "config", "user.name", "CI")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "initial")
    return tmp_path


def env_text(repo, env):
    return (repo / "environments" / env / "values.yaml").read_text()


def changed_lines(repo, rev="HEAD~1"):
    diff = git(repo, "diff", "--unified=0", rev, "HEAD")
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_bump_edits_exactly_one_line_and_keeps_comments(repo):
    before = env_text(repo, "dev")
    change = promotion.bump("dev", "control-service", SHA, root=repo)
    assert (change.old, change.new) == ("0.1.0", SHA)
    assert changed_lines(repo) == ['-      image: {tag: "0.1.0"}', f'+      image: {{tag: "{SHA}"}}']
    after = env_text(repo, "dev")
    assert [line for line in before.splitlines() if "#" in line] == [line for line in after.splitlines() if "#" in line]
    assert yaml.safe_load(after)["components"]["control-service"]["values"]["image"]["tag"] == SHA
    assert git(repo, "log", "-1", "--format=%s").strip() == f"build: update control-service image to {SHA} in dev"
    assert git(repo, "status", "--porcelain") == ""


def test_bump_to_the_same_tag_is_a_no_op(repo):
    assert promotion.bump("dev", "frontend", "0.1.0", root=repo) is None
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_bump_handles_block_style_and_plain_scalars(repo):
    path = repo / "environments" / "dev" / "values.yaml"
    path.write_text(
        path.read_text().replace(
            '      image: {tag: "0.1.0"}\n  frontend:', "      image:\n        tag: 0.1.0  # block style\n  frontend:"
        )
    )
    git(repo, "commit", "-qam", "block style")
    promotion.bump("dev", "control-service", "1.2.0", root=repo)
    assert changed_lines(repo) == ["-        tag: 0.1.0  # block style", '+        tag: "1.2.0"  # block style']


def test_a_bump_of_training_moves_the_rayservice_copy_of_its_tag_in_the_same_commit(repo):
    """dev serves with a RayService on the training image: a training image dev's Ray Serve does not run
    would be a bump that never reached serving."""
    change = promotion.bump("dev", "training", "2.0.0", root=repo)
    assert (change.old, change.new) == ("0.1.0", "2.0.0")
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert sorted(changed_lines(repo)) == sorted(
        [
            '-      image: {tag: "0.1.0"}',
            '+      image: {tag: "2.0.0"}',
            '-        image: {tag: "0.1.0"}     # the training image\'s: a bump of training moves it too',
            '+        image: {tag: "2.0.0"}     # the training image\'s: a bump of training moves it too',
        ]
    )
    dev = yaml.safe_load(env_text(repo, "dev"))["components"]
    assert dev["inference"]["values"]["rayserve"]["image"]["tag"] == dev["training"]["values"]["image"]["tag"] == "2.0.0"
    # staging serves with Triton: it has no copy, and a promotion adds none.
    promotion.promote("dev", "staging", root=repo)
    assert "rayserve" not in yaml.safe_load(env_text(repo, "staging"))["components"]["inference"]["values"]


def test_promote_copies_exactly_the_pins_as_one_commit(repo):
    promotion.bump("dev", "control-service", SHA, root=repo)
    promotion.bump("dev", "training", "2.0.0", root=repo)
    promotion.pin_model("dev", "7", root=repo, sha256=DIGEST)
    staging_before = yaml.safe_load(env_text(repo, "staging"))

    assert [str(c) for c in promotion.plan("dev", "staging", root=repo)] == [
        f"control-service image.tag: 0.1.0 -> {SHA}",
        "training image.tag: 0.1.0 -> 2.0.0",
        "inference model.version: 1 -> 7",
        f"inference model.sha256: {FIRST_DIGEST} -> {DIGEST}",
    ]
    head = git(repo, "rev-parse", "HEAD").strip()
    changes = promotion.promote("dev", "staging", root=repo)
    assert len(changes) == 4
    assert git(repo, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert git(repo, "diff", "--name-only", head, "HEAD").split() == ["environments/staging/values.yaml"]
    assert len(changed_lines(repo, head)) == 6  # the model's version and digest share one line

    staging_after = yaml.safe_load(env_text(repo, "staging"))
    values = staging_after["components"]
    assert values["control-service"]["values"]["image"]["tag"] == SHA
    assert values["inference"]["values"]["model"]["version"] == "7"
    # Everything else in staging (replicas, sizes) stays staging's own.
    for component in ("control-service", "inference"):
        before = dict(staging_before["components"][component]["values"])
        after = dict(values[component]["values"])
        before.pop("image", None), after.pop("image", None), before.pop("model", None), after.pop("model", None)
        assert before == after
    assert "promote: dev -> staging" in git(repo, "log", "-1", "--format=%B")


def test_a_model_pinned_by_digest_is_promoted_with_its_digest(repo):
    """The digest travels with the version: prod serves the bytes dev served (charts/inference checks them)."""
    digest = "3f" * 32
    changes = promotion.pin_model("dev", "7", root=repo, sha256=digest)
    assert [str(c) for c in changes] == ["inference model.version: 1 -> 7", f"inference model.sha256: {FIRST_DIGEST} -> {digest}"]
    assert git(repo, "log", "-1", "--format=%s").strip() == "model: serve model version 7 (sha256 3f3f3f3f3f3f…) in dev"
    promotion.promote("dev", "staging", root=repo)
    pinned = yaml.safe_load(env_text(repo, "staging"))["components"]["inference"]["values"]["model"]
    assert pinned == {"version": "7", "sha256": digest, "requireSha256": True}

    # A new version without a digest clears the old one, which would not match the new bytes.
    assert [str(c) for c in promotion.pin_model("dev", "8", root=repo)] == [
        "inference model.version: 7 -> 8",
        f"inference model.sha256: {digest} -> ",
    ]
    assert yaml.safe_load(env_text(repo, "dev"))["components"]["inference"]["values"]["model"] == {"version": "8", "sha256": ""}
    assert promotion.pin_model("dev", "8", root=repo) == []  # already so: no commit


def test_a_longer_version_and_its_digest_are_rewritten_on_their_shared_line(repo):
    """Version and digest share one flow-style line: a version that grows ("1" -> "10") must not shift the digest's
    place (rewrites run right to left)."""
    promotion.pin_model("dev", "10", root=repo, sha256=DIGEST)
    assert yaml.safe_load(env_text(repo, "dev"))["components"]["inference"]["values"]["model"] == {
        "version": "10",
        "sha256": DIGEST,
    }
    assert changed_lines(repo) == [
        f'-      model: {{version: "1", sha256: "{FIRST_DIGEST}"}}',
        f'+      model: {{version: "10", sha256: "{DIGEST}"}}',
    ]


def test_staging_and_prod_take_a_model_only_with_its_digest(repo):
    """Their model.requireSha256: pin-model without --sha256 is refused there, and so is promoting dev's digest-less
    pin; both name what is missing and write nothing. dev still takes a bare version."""
    head = git(repo, "rev-parse", "HEAD").strip()
    for env in ("staging", "prod"):
        with pytest.raises(PinError, match=f"{env} takes a model only with its digest .*version 7 has no sha256"):
            promotion.pin_model(env, "7", root=repo)
    promotion.pin_model("dev", "7", root=repo)
    with pytest.raises(PinError, match="dev pins version 7 without one: pin it there with `polyp-gitops pin-model --env dev"):
        promotion.promote("dev", "staging", root=repo)
    assert git(repo, "diff", "--name-only", head, "HEAD").split() == ["environments/dev/values.yaml"]
    assert git(repo, "status", "--porcelain") == ""
    promotion.pin_model("dev", "7", root=repo, sha256=DIGEST)
    assert f"inference model.sha256: {FIRST_DIGEST} -> {DIGEST}" in map(str, promotion.promote("dev", "staging", root=repo))
    assert "inference model.version: 1 -> 7" in map(str, promotion.promote("staging", "prod", root=repo))


def test_a_fresh_clone_pins_no_model_in_staging_and_prod_and_requires_digests_there():
    """Until a first promotion brings a version with its digest, staging and prod serve nothing (their predictor
    says so) rather than whatever their registries call a version."""
    for env in ("staging", "prod"):
        model = yaml.safe_load(env_text(REPO_ROOT, env))["components"]["inference"]["values"]["model"]
        assert model == {"version": "", "sha256": "", "requireSha256": True}, env
    assert "requireSha256" not in yaml.safe_load(env_text(REPO_ROOT, "dev"))["components"]["inference"]["values"]["model"]


def test_promote_when_nothing_differs_is_a_no_op(repo):
    assert promotion.plan("staging", "prod", root=repo) == []
    assert promotion.promote("staging", "prod", root=repo) == []
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_rollback_is_a_git_revert_of_the_promotion(repo):
    promotion.bump("dev", "frontend", "1.1.0", root=repo)
    before = env_text(repo, "staging")
    promotion.promote("dev", "staging", root=repo)
    git(repo, "revert", "--no-edit", "HEAD")
    assert env_text(repo, "staging") == before


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: promotion.bump("qa", "frontend", "1.0.0", root=r), "unknown environment 'qa'"),
        (lambda r: promotion.bump("dev", "mlflow", "1.0.0", root=r), "unknown component 'mlflow'"),
        (lambda r: promotion.bump("dev", "frontend", "latest", root=r), "not immutable"),
        (lambda r: promotion.bump("dev", "frontend", "feature-x", root=r), "not immutable"),
        (lambda r: promotion.pin_model("dev", "v3", root=r), "not an MLflow model version"),
        (lambda r: promotion.pin_model("dev", "3", root=r, sha256="abc123"), "not a sha256"),
        (lambda r: promotion.plan("dev", "prod", root=r), "one step at a time"),
        (lambda r: promotion.plan("prod", "dev", root=r), "one step at a time"),
    ],
)
def test_bad_requests_fail_clearly_and_write_nothing(repo, call, message):
    with pytest.raises(PinError, match=message):
        call(repo)
    assert git(repo, "status", "--porcelain") == "" and git(repo, "rev-list", "--count", "HEAD").strip() == "1"


def test_a_dirty_tree_is_refused_and_left_as_it_was(repo):
    (repo / "notes.txt").write_text("work in progress\n")
    with pytest.raises(GitError, match="uncommitted changes"):
        promotion.bump("dev", "frontend", "1.0.1", root=repo)
    with pytest.raises(GitError, match="uncommitted changes"):
        promotion.pin_model("dev", "3", root=repo)
    assert git(repo, "status", "--porcelain") == "?? notes.txt\n"
    promotion.bump("dev", "frontend", "1.0.1", root=repo, commit=False)  # an edit without commit is allowed
    git(repo, "checkout", "--", "environments")
    promotion.bump("dev", "frontend", "1.0.1", root=repo, commit=False)
    with pytest.raises(GitError, match="uncommitted changes"):
        promotion.promote("dev", "staging", root=repo)


def _cli(repo, *args, cwd=None):
    env = {**os.environ, "POLYP_REPO_ROOT": str(repo)}
    return subprocess.run([sys.executable, "-m", "polyp_gitops.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def _cli_in(cwd, *args):
    """As a user runs it: no POLYP_REPO_ROOT, in a working directory of their choice."""
    env = {k: v for k, v in os.environ.items() if k != "POLYP_REPO_ROOT"}
    return subprocess.run([sys.executable, "-m", "polyp_gitops.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_commands_act_on_the_clone_they_run_in_not_the_one_installed_from(repo):
    """The tool is installed from this checkout (REPO_ROOT); run inside another clone, only that clone changes."""
    installed_head = git(REPO_ROOT, "rev-parse", "HEAD")
    installed_env = (REPO_ROOT / "environments" / "dev" / "values.yaml").read_text()
    result = _cli_in(repo / "environments", "bump", "--env", "dev", "--component", "frontend", "--tag", SHA)
    assert result.returncode == 0, result.stderr
    assert git(repo, "log", "-1", "--format=%s").strip() == f"build: update frontend image to {SHA} in dev"
    assert git(REPO_ROOT, "rev-parse", "HEAD") == installed_head
    assert (REPO_ROOT / "environments" / "dev" / "values.yaml").read_text() == installed_env


def test_repo_dir_names_the_repository_from_anywhere(repo, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = _cli_in(elsewhere, "-C", str(repo), "pin-model", "--env", "dev", "--version", "9")
    assert result.returncode == 0, result.stderr
    assert git(repo, "log", "-1", "--format=%s").strip() == "model: serve model version 9 in dev"


@pytest.mark.parametrize(
    "command",
    [
        ["bump", "--env", "dev", "--component", "frontend", "--tag", SHA],
        ["pin-model", "--env", "dev", "--version", "9"],
        ["diff", "--from", "dev", "--to", "staging"],
        ["promote", "--from", "dev", "--to", "staging"],
        ["render", "--env", "dev"],
        ["validate", "--env", "dev"],
    ],
)
def test_outside_any_repository_every_command_exits_2_and_writes_nothing(tmp_path, command):
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    result = _cli_in(outside, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not inside a git repository" in result.stderr and "--repo-dir" in result.stderr
    assert "Traceback" not in result.stderr and list(outside.iterdir()) == []


def test_a_git_repository_that_is_not_the_platform_is_refused(tmp_path):
    git(tmp_path, "init", "-q")
    result = _cli_in(tmp_path, "diff", "--from", "dev", "--to", "staging")
    assert result.returncode == 2 and "is not the platform repository" in result.stderr


def test_cli_diff_then_promote(repo):
    assert _cli(repo, "bump", "--env", "dev", "--component", "training", "--tag", SHA).returncode == 0
    diff = _cli(repo, "diff", "--from", "dev", "--to", "staging")
    assert diff.returncode == 0 and diff.stdout == f"training image.tag: 0.1.0 -> {SHA}\n"
    promote = _cli(repo, "promote", "--from", "dev", "--to", "staging")
    assert promote.returncode == 0 and f"staging: training image.tag: 0.1.0 -> {SHA}" in promote.stdout
    again = _cli(repo, "diff", "--from", "dev", "--to", "staging")
    assert "nothing to promote" in again.stdout


def test_cli_errors_exit_2_with_a_message(repo):
    result = _cli(repo, "bump", "--env", "dev", "--component", "frontend", "--tag", "latest")
    assert result.returncode == 2 and "not immutable" in result.stderr and "Traceback" not in result.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_own_images_name_each_image_as_the_environment_pins_it(repo):
    """What make images --env and install.sh --target kind tag: a bumped tag, and a repository an environment overrides."""
    promotion.bump("dev", "frontend", SHA, root=repo)
    staging = yaml.safe_load(env_text(repo, "staging"))
    staging["components"].setdefault("control-service", {}).setdefault("values", {}).setdefault("image", {})
    staging["components"]["control-service"]["values"]["image"]["repository"] = "registry.example.com/polyp/control"
    (repo / "environments" / "staging" / "values.yaml").write_text(yaml.safe_dump(staging))
    dev = own_images("dev", repo)
    assert set(dev) == {"control-service", "frontend", "training"}
    assert dev["frontend"] == f"ghcr.io/polyp-mlops/frontend:{SHA}"
    assert own_images("staging", repo)["control-service"].startswith("registry.example.com/polyp/control:")
    result = subprocess.run(
        [sys.executable, "-m", "polyp_gitops.cli", "-C", str(repo), "own-images", "--env", "dev"], capture_output=True, text=True
    )
    assert f"frontend ghcr.io/polyp-mlops/frontend:{SHA}" in result.stdout.splitlines(), result.stderr
