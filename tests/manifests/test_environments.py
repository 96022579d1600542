"""The environments are listed once, in promotion order (environments/promotion.yaml): polyp-gitops, install.sh,
the root chart and the app-of-apps all read that list, so a new environment needs its folder and one line."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from polyp_gitops.render import helm_template
from polyp_gitops.repo import ENVIRONMENTS, PROMOTION_FILE, environments
from polyp_gitops.tools import ToolError

from ..conftest import TEST_REPO_URL, install_dry_run

# Three environment names in a row, as a list, a shell test or an alternation would write them.
WRITTEN_OUT = re.compile(r"""dev["']?\s*[,|/ ]\s*["']?staging["']?\s*[,|/ ]\s*["']?prod""")


def test_the_list_is_written_in_one_file(repo_root):
    tracked = subprocess.run(["git", "ls-files"], cwd=repo_root, capture_output=True, text=True, check=True).stdout.split()
    written = [
        path
        for path in tracked
        if path != str(PROMOTION_FILE)
        and not path.endswith((".md", ".lock", ".json", ".png", ".jpg", ".tgz"))
        and WRITTEN_OUT.search((repo_root / path).read_text(errors="replace"))
    ]
    assert written == [], f"the environment list is written out again in {written}; read {PROMOTION_FILE} instead"
    assert environments(repo_root) == ENVIRONMENTS and ENVIRONMENTS[0] == "dev"


@pytest.fixture
def with_qa(repo_root, tmp_path):
    """A copy of what bootstraps the platform, with a fourth environment: its folder and one more list entry."""
    for folder in ("bootstrap", "apps", "environments"):
        shutil.copytree(repo_root / folder, tmp_path / folder)
    shutil.copytree(tmp_path / "environments" / "staging", tmp_path / "environments" / "qa")
    listed = tmp_path / PROMOTION_FILE
    listed.write_text(listed.read_text().replace("]", ", qa]"))
    return tmp_path


def test_a_new_environment_needs_its_folder_and_one_list_entry(with_qa):
    assert environments(with_qa)[-1] == "qa"
    install = install_dry_run(with_qa, "--repo", TEST_REPO_URL, env="qa")
    assert install.returncode == 0, install.stderr
    [root_app] = [d for d in yaml.safe_load_all(install.stdout) if d and d.get("kind") == "Application"]
    assert root_app["metadata"]["name"] == "polyp-qa"
    value_files = root_app["spec"]["source"]["helm"]["valueFiles"]
    assert value_files == ["../environments/promotion.yaml", "../environments/qa/values.yaml"]
    apps = helm_template(
        with_qa / "apps",
        "polyp-qa",
        "argocd",
        [with_qa / "apps" / name for name in value_files],
        parameters=[{"name": "repoURL", "value": TEST_REPO_URL}, {"name": "environment", "value": "qa"}],
    )
    assert {o["kind"] for o in apps} == {"Application"} and len(apps) > 5


def test_an_unlisted_environment_is_refused_by_each_reader(with_qa):
    (with_qa / "environments" / "perf").mkdir()
    install = install_dry_run(with_qa, env="perf")
    assert install.returncode == 2 and f"--env must be one of {' '.join(ENVIRONMENTS)} qa" in install.stderr
    for chart in ("bootstrap/root", "apps"):
        with pytest.raises(ToolError, match=rf"environment must be one of {', '.join(ENVIRONMENTS)}, qa .*got \"perf\""):
            helm_template(
                with_qa / chart,
                "polyp-perf",
                "argocd",
                [with_qa / PROMOTION_FILE],
                parameters=[{"name": "repoURL", "value": TEST_REPO_URL}, {"name": "environment", "value": "perf"}],
            )


def test_the_promote_workflow_offers_the_steps_of_the_promotion_order(repo_root):
    """GitHub's choice inputs cannot read a file: the workflow's options are kept in step by this test."""
    inputs = yaml.safe_load((repo_root / ".github" / "workflows" / "promote.yml").read_text())[True]["workflow_dispatch"][
        "inputs"
    ]
    assert inputs["from"]["options"] == list(ENVIRONMENTS[:-1])
    assert inputs["to"]["options"] == list(ENVIRONMENTS[1:])
