"""Air-gapped installs: one chart mirror serves every upstream chart, and the tool says what it must hold."""

from __future__ import annotations

import subprocess
import sys

from polyp_gitops.render import render_applications, render_bootstrap

from ..conftest import TEST_REPO_URL, install_dry_run

MIRROR = "registry.example.com/platform-charts"


def test_a_chart_mirror_replaces_every_upstream_repository(repo_root):
    applications = render_applications("prod", repo_root, chart_mirror=MIRROR)
    upstream = [a["spec"]["source"] for a in applications if "chart" in a["spec"]["source"]]
    assert len(upstream) == 9 and {s["repoURL"] for s in upstream} == {MIRROR}
    bootstrap = render_bootstrap("prod", repo_root, TEST_REPO_URL, "v1.2.3", chart_mirror=MIRROR)
    project = next(o for o in bootstrap if o["kind"] == "AppProject")
    assert project["spec"]["sourceRepos"] == [TEST_REPO_URL, MIRROR]  # nothing else may be pulled from


def test_install_sh_takes_argo_cd_from_the_mirror_too(repo_root):
    out = install_dry_run(repo_root, "--repo", TEST_REPO_URL, "--revision", "main", "--chart-mirror", MIRROR, check=True).stdout
    assert f"helm upgrade --install argocd oci://{MIRROR}/argo-cd --version" in out
    assert f"value: {MIRROR}" in out  # the root Application passes it to the app-of-apps


def test_charts_lists_what_the_mirror_must_hold(repo_root):
    out = subprocess.run(
        [sys.executable, "-m", "polyp_gitops.cli", "-C", str(repo_root), "charts"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "argo-cd 10.1.1 https://argoproj.github.io/argo-helm" in out
    assert "kube-prometheus-stack 88.5.3 https://prometheus-community.github.io/helm-charts" in out
    assert len(out) == 10
