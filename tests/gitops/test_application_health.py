"""The health check Argo CD applies to child Applications (bootstrap/application-health.lua), run in Lua 5.1.

Argo CD runs it in gopher-lua (Lua 5.1) with the Application as the global `obj`; so do these tests.
The root app's sync waves wait on it, so a child that did not render or sync must not count as Healthy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from polyp_gitops.render import argocd_chart, chart_archive
from polyp_gitops.tools import find_tool

HEALTH_KEY = "resource.customizations.health.argoproj.io_Application"


def assess(repo_root: Path, status: dict | None) -> tuple[str, str]:
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "mlflow"}}
    if status is not None:
        app["status"] = status
    lua.globals().obj = lua.table_from(app, recursive=True)
    result = lua.execute((repo_root / "bootstrap" / "application-health.lua").read_text())
    return result["status"], result["message"]


SYNCED = {"status": "Synced", "revision": "abc"}


@pytest.mark.parametrize(
    "status, health, says",
    [
        ({"sync": SYNCED, "health": {"status": "Healthy"}}, "Healthy", ""),
        ({"sync": SYNCED, "health": {"status": "Progressing", "message": "1 of 2 pods ready"}}, "Progressing", "1 of 2 pods"),
        (
            {"sync": SYNCED, "health": {"status": "Degraded", "message": "Deployment mlflow: CrashLoopBackOff"}},
            "Degraded",
            "CrashLoopBackOff",
        ),
        (None, "Progressing", "first reconciliation"),
    ],
    ids=["healthy", "progressing", "degraded", "new"],
)
def test_relays_the_childs_own_health_when_it_is_synced(repo_root, status, health, says):
    assert assess(repo_root, status)[0] == health
    assert says in assess(repo_root, status)[1]


def test_a_child_that_failed_to_render_is_degraded_not_healthy(repo_root):
    """Seen live: mlflow with an unknown values key rendered nothing and reported health Healthy."""
    status = {
        "sync": {"status": "Unknown"},
        "health": {"status": "Healthy"},
        "conditions": [
            {
                "type": "ComparisonError",
                "message": "failed to execute helm template: values don't "
                "meet the specifications of the schema(s): additional properties 'flaskServerSecret'",
            }
        ],
    }
    health, message = assess(repo_root, status)
    assert health == "Degraded"
    assert message.startswith("ComparisonError: ") and "flaskServerSecret" in message


def test_an_invalid_spec_is_degraded(repo_root):
    status = {
        "sync": {"status": "Unknown"},
        "health": {"status": "Healthy"},
        "conditions": [
            {"type": "SyncError", "message": "retrying"},
            {"type": "InvalidSpecError", "message": "namespace kube-system is not permitted in project 'polyp-platform'"},
        ],
    }
    assert assess(repo_root, status) == (
        "Degraded",
        "InvalidSpecError: namespace kube-system is not permitted in project 'polyp-platform'",
    )


def test_a_failed_sync_is_degraded_with_its_message(repo_root):
    status = {
        "sync": {"status": "OutOfSync"},
        "health": {"status": "Healthy"},
        "operationState": {"phase": "Failed", "message": "one or more objects failed to apply"},
    }
    assert assess(repo_root, status) == ("Degraded", "last sync failed: one or more objects failed to apply")


@pytest.mark.parametrize("health", ["Healthy", "Missing"])
def test_out_of_sync_is_not_healthy_yet(repo_root, health):
    status = {
        "sync": {"status": "OutOfSync"},
        "health": {"status": health},
        "operationState": {"phase": "Running", "message": "waiting for healthy state"},
    }
    health_now, message = assess(repo_root, status)
    assert health_now == "Progressing" and message.startswith("OutOfSync")


def test_unknown_sync_without_a_condition_is_degraded(repo_root):
    assert assess(repo_root, {"sync": {"status": "Unknown"}, "health": {"status": "Healthy"}})[0] == "Degraded"


def test_the_argo_cd_chart_installs_this_check_and_a_sync_timeout(repo_root):
    """Render the pinned argo-cd chart with exactly the values and --set-file that install.sh passes."""
    install = (repo_root / "bootstrap" / "install.sh").read_text()
    key = "configs.cm." + HEALTH_KEY.replace(".", "\\.")  # Helm's escaping of dots inside a key
    assert f'--set-file "{key}=$HERE/application-health.lua"' in install, "install.sh must pass the check with --set-file"
    helm = find_tool("helm")
    chart = chart_archive("argo-cd", argocd_chart(repo_root)[1])
    out = subprocess.run(
        [
            helm,
            "template",
            "argocd",
            str(chart),
            "--namespace",
            "argocd",
            "--kube-version",
            "1.34.0",
            "--values",
            str(repo_root / "bootstrap" / "argocd-values.yaml"),
            "--set-file",
            f"{key}={repo_root / 'bootstrap' / 'application-health.lua'}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    maps = {o["metadata"]["name"]: o for o in yaml.safe_load_all(out) if o and o["kind"] == "ConfigMap"}
    assert maps["argocd-cm"]["data"][HEALTH_KEY] == (repo_root / "bootstrap" / "application-health.lua").read_text()
    timeout = int(maps["argocd-cmd-params-cm"]["data"]["controller.sync.timeout.seconds"])
    assert 0 < timeout <= 3600, "a stuck wave must end, and not after hours"
