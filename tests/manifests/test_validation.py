"""Every rendered object validates strictly against Kubernetes and CRD schemas, offline."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from polyp_gitops.render import render_bootstrap
from polyp_gitops.repo import ENVIRONMENTS, INSTALL_ROOT, own_charts
from polyp_gitops.validate import kubeconform

from ..conftest import TEST_REPO_URL, install_dry_run

OWN_CHART_APPS = set(own_charts(INSTALL_ROOT))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_validates_with_nothing_skipped(rendered, env):
    report = kubeconform(rendered[env].all_objects())
    assert report.ok, report.problems
    assert report.valid == len(rendered[env].all_objects())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_application_renders_its_chart_own_and_upstream(rendered, env):
    apps = rendered[env].apps
    for name in OWN_CHART_APPS:
        assert apps[name].objects, f"{name} rendered nothing in {env}"
        assert apps[name].upstream_chart is None
    for name, app in apps.items():
        if name not in OWN_CHART_APPS:
            assert app.upstream_chart and app.objects, f"{name}: the upstream chart rendered nothing"
    assert len(rendered[env].all_objects()) > 250  # the whole cluster, not the Application objects alone


def test_children_follow_the_repo_and_revision_given_at_bootstrap(rendered):
    for app in rendered["dev"].apps.values():
        source = app.application["spec"]["source"]
        if "path" in source:
            assert source["repoURL"] == TEST_REPO_URL
            assert source["targetRevision"] == "v1.2.3"


def test_strict_validation_rejects_an_unknown_field(rendered):
    objects = copy.deepcopy(rendered["dev"].all_objects())
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    report = kubeconform(objects)
    assert report.invalid == 1 and not report.ok


def test_strict_validation_rejects_a_wrong_crd_field(rendered):
    objects = copy.deepcopy(rendered["dev"].all_objects())
    cluster = next(o for o in objects if o["kind"] == "RayCluster")
    cluster["spec"]["headGroupSpec"]["rayStartParams"] = "not-a-map"
    report = kubeconform(objects)
    assert report.invalid == 1 and not report.ok


def test_a_kind_without_schema_is_an_error_not_a_skip():
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    report = kubeconform([unknown])
    assert report.errors == 1 and report.skipped == 0 and not report.ok


def test_bootstrap_dry_run_prints_valid_manifests_without_secret_values(repo_root):
    out = install_dry_run(repo_root, "--repo", TEST_REPO_URL, "--revision", "v1.2.3", check=True).stdout
    objects = [o for o in yaml.safe_load_all(out) if o]
    report = kubeconform(objects)
    assert report.ok and report.valid == len(objects), report.problems

    kinds = [o["kind"] for o in objects]
    assert kinds.count("Application") == 1
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "AppProject") == [
        "default",  # emptied: it permits nothing
        "polyp-platform",
        "polyp-platform-root",
    ]
    root = next(o for o in objects if o["kind"] == "Application")
    assert root == next(o for o in render_bootstrap("dev", repo_root, TEST_REPO_URL, "v1.2.3") if o["kind"] == "Application")
    for secret in (o for o in objects if o["kind"] == "Secret"):
        for key, value in secret["stringData"].items():
            assert value == "<generated at install>" or not _looks_secret(key), (secret["metadata"]["name"], key)


def _looks_secret(key: str) -> bool:
    return any(word in key.lower() for word in ("password", "secret", "token", "default"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "minikube", "--env", "dev"], "--target must be kind, gke or local"),
        (["--target", "kind", "--env", "qa"], f"--env must be one of {' '.join(ENVIRONMENTS)} (environments/promotion.yaml)"),
        (["--target", "kind", "--env", "dev", "--bogus"], "unknown argument: --bogus"),
    ],
)
def test_bootstrap_rejects_bad_arguments_clearly(repo_root, args, message):
    result = subprocess.run([str(repo_root / "bootstrap" / "install.sh"), "--dry-run", *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


def test_validate_command_reports_argo_cd_and_every_application(repo_root):
    """`make validate` for one environment: per Application chart/objects/valid, then the cross-references."""
    result = subprocess.run(
        [sys.executable, "-m", "polyp_gitops.cli", "-C", str(repo_root), "validate", "--env", "dev"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.match(r"bootstrap: \d+ valid, 0 invalid, 0 errors, 0 skipped", lines[0])
    dev = next(line for line in lines if line.startswith("dev: ") and "valid" in line)
    assert int(dev.split()[1]) > 250 and "0 invalid, 0 errors, 0 skipped" in dev
    for name in ("cert-manager", "kube-prometheus-stack", "mlflow", "control-service", "training"):
        assert any(line.split()[:1] == [name] and line.endswith("valid") for line in lines), name
    assert lines[-1] == "dev: cross-references ok"
