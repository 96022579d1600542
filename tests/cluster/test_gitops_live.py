"""The dev app-of-apps synced by the real Argo CD onto a real API server (kwok nodes), driven by git.

Shares its Synced/Healthy and sync-wave assertions with e2e-kind.yml (polyp_gitops.live).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from ruamel.yaml import YAML

from polyp_gitops import render
from polyp_gitops.cli import main as gitops

from .conftest import ENV, ROOT_APP, Platform, git, is_ready

pytestmark = pytest.mark.cluster

SYNC_FROM_GIT_TIMEOUT_S = 240
REAL_NODE = "polyp-real-node"


def _image(platform: Platform, namespace: str, deployment: str) -> str | None:
    obj = platform.get("-n", namespace, "deployment", deployment)
    return obj["spec"]["template"]["spec"]["containers"][0]["image"] if obj else None


def _edit_env_values(platform: Platform, edit) -> None:
    path = platform.work / "environments" / ENV / "values.yaml"
    yaml = YAML()
    data = yaml.load(path)
    edit(data)
    with path.open("w") as f:
        yaml.dump(data, f)


def test_every_application_synced_and_healthy_in_wave_order(platform: Platform):
    record = platform.first_sync
    expected = {a["metadata"]["name"] for a in render.render_applications(ENV, platform.work)} | {ROOT_APP}
    assert set(record.ready) == expected
    assert record.wave_violations(ROOT_APP) == []
    # The check judged the waves: every child after the first wave was seen appearing.
    first_wave = min(record.waves[n] for n in expected - {ROOT_APP})
    assert {n for n in expected - {ROOT_APP} if record.waves[n] > first_wave} <= set(record.judged(ROOT_APP))
    print(
        "first Synced+Healthy (s after install):",
        json.dumps({n: round(t) for n, t in sorted(record.ready_after_s.items(), key=lambda kv: kv[1])}),
    )


def test_install_again_keeps_the_secrets_and_argo_cd(platform: Platform):
    def secrets() -> dict:
        return {
            f"{ns}/{name}": platform.get("-n", ns, "secret", name)["data"]
            for ns, name in [
                ("polyp", "control-api-token"),
                ("minio", "minio-root"),
                ("polyp", "s3-serving"),
                ("minio", "s3-serving"),
                ("monitoring", "grafana-admin"),
            ]
        }

    before = secrets()
    assert before["polyp/s3-serving"] == before["minio/s3-serving"]
    pids = json.loads((platform.state_dir / "state.json").read_text())["pids"]
    again = subprocess.run(
        [
            "bash",
            str(platform.work / "bootstrap" / "install.sh"),
            "--target",
            "local",
            "--env",
            ENV,
            "--repo",
            f"file://{platform.bare}",
            "--revision",
            "main",
        ],
        env=platform.env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "control-api-token exists: kept" in again.stdout
    assert secrets() == before
    assert json.loads((platform.state_dir / "state.json").read_text())["pids"] == pids
    assert all(s.ready for s in platform.applications().values())


def test_a_hand_edit_of_a_managed_deployment_is_reverted(platform: Platform):
    managed = _image(platform, "polyp", "control-service")
    platform.kubectl(
        "-n",
        "polyp",
        "patch",
        "deployment",
        "control-service",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example.invalid/hand-edit:1"}]),
    )
    assert _image(platform, "polyp", "control-service") == "example.invalid/hand-edit:1"
    took = platform.wait(lambda: _image(platform, "polyp", "control-service") == managed, 120, "self-heal")
    print(f"self-heal restored {managed} in {took:.1f} s")


def test_a_bump_commit_reaches_the_cluster_and_its_revert_rolls_back(platform: Platform):
    before = _image(platform, "polyp", "control-service")
    head = git("rev-parse", "HEAD", cwd=platform.work)
    assert gitops(["-C", str(platform.work), "bump", "--env", ENV, "--component", "control-service", "--tag", "0.2.0-live"]) == 0
    assert git("rev-parse", "HEAD", cwd=platform.work) != head, "bump made no commit"
    git("push", "-q", "origin", "main", cwd=platform.work)
    took = platform.wait(
        lambda: (_image(platform, "polyp", "control-service") or "").endswith(":0.2.0-live"),
        SYNC_FROM_GIT_TIMEOUT_S,
        "the bumped image in the cluster",
    )
    print(f"bump commit -> new image in the Deployment: {took:.1f} s")
    platform.revert_last()
    took = platform.wait(
        lambda: _image(platform, "polyp", "control-service") == before, SYNC_FROM_GIT_TIMEOUT_S, "the revert rolled back"
    )
    print(f"revert commit -> previous image back: {took:.1f} s")


def _served_pin(platform: Platform) -> dict | None:
    """The version and digest dev's RayService tells its Serve application to serve (charts/inference rayserve)."""
    service = platform.get("-n", "polyp", "rayservice", "inference")
    if not service:
        return None
    [application] = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    return {"version": str(application["args"]["version"]), "sha256": application["args"].get("sha256", "")}


def test_a_pin_model_commit_reaches_the_rayservice_and_its_revert_rolls_back(platform: Platform):
    """dev serves with a RayService: the pin in git is the version its Serve application is told to serve, and
    KubeRay rolls the application in place on that change. (Its pods are simulated here; the real node's loop
    test serves a pinned version for real.)"""
    before = _served_pin(platform)
    assert before == {"version": "1", "sha256": ""}, before  # dev's pin, no digest yet
    digest = "ab" * 32
    assert gitops(["-C", str(platform.work), "pin-model", "--env", ENV, "--version", "2", "--sha256", digest]) == 0
    git("push", "-q", "origin", "main", cwd=platform.work)
    took = platform.wait(
        lambda: _served_pin(platform) == {"version": "2", "sha256": digest},
        SYNC_FROM_GIT_TIMEOUT_S,
        "the pinned version and digest in the RayService",
    )
    print(f"pin-model commit -> the RayService's Serve config: {took:.1f} s")
    platform.revert_last()
    platform.wait(lambda: _served_pin(platform) == before, SYNC_FROM_GIT_TIMEOUT_S, "the revert rolled the pin back")


def test_disabling_a_component_prunes_its_objects(platform: Platform):
    assert platform.get("-n", "polyp", "deployment", "frontend")
    _edit_env_values(platform, lambda v: v["components"]["frontend"].__setitem__("enabled", False))
    platform.push("dev: frontend off")
    took = platform.wait(
        lambda: platform.get("-n", "polyp", "deployment", "frontend") is None and "frontend" not in platform.applications(),
        SYNC_FROM_GIT_TIMEOUT_S,
        "frontend pruned",
    )
    print(f"frontend Application and Deployment pruned {took:.1f} s after the commit")
    platform.revert_last()
    platform.wait(
        lambda: platform.get("-n", "polyp", "deployment", "frontend") is not None,
        SYNC_FROM_GIT_TIMEOUT_S,
        "frontend back after the revert",
    )
    platform.all_synced_healthy()


def test_an_invalid_value_is_a_sync_error_on_its_application_only(platform: Platform):
    before = platform.get("-n", "polyp", "deployment", "control-service")["spec"]
    _edit_env_values(platform, lambda v: v["components"]["control-service"]["values"].__setitem__("replicaCount", "many"))
    platform.push("dev: an invalid replicaCount")

    def control_service_error() -> str:
        app = platform.get("-n", "argocd", "applications.argoproj.io", "control-service") or {}
        return " ".join(
            c.get("message", "") for c in (app.get("status") or {}).get("conditions") or [] if c.get("type") == "ComparisonError"
        )

    platform.wait(
        lambda: "replicaCount" in control_service_error(),
        SYNC_FROM_GIT_TIMEOUT_S,
        "a ComparisonError naming replicaCount on control-service",
    )
    print("control-service:", control_service_error()[:300])
    states = platform.applications()
    others = {n: (s.sync, s.health) for n, s in states.items() if n not in ("control-service", ROOT_APP)}
    assert all(v == ("Synced", "Healthy") for v in others.values()), others
    # The root app sees the broken child through its health check; nothing was applied.
    assert states["control-service"].health != "Healthy" or states["control-service"].sync != "Synced"
    assert platform.get("-n", "polyp", "deployment", "control-service")["spec"] == before
    platform.revert_last()
    platform.all_synced_healthy()


# What a leaked push credential (the CI bot's) would commit: the control service's ServiceAccount made cluster-admin.
ESCALATION = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ci-bot-admin
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: ServiceAccount, name: control-service, namespace: polyp}
"""


def test_the_project_refuses_a_cluster_role_binding_no_chart_renders(platform: Platform):
    """The AppProject is a commit's boundary: it names each cluster-scoped object the charts render, so a
    ClusterRoleBinding added to a chart is refused by Argo CD itself and never applied; the revert heals."""
    (platform.work / "charts" / "control-service" / "templates" / "escalate.yaml").write_text(ESCALATION)
    git("add", "-A", cwd=platform.work)
    platform.push("control-service: cluster-admin for its ServiceAccount")

    def refusal() -> str:
        app = platform.get("-n", "argocd", "applications.argoproj.io", "control-service") or {}
        text = json.dumps(app.get("status") or {})
        return text if "ClusterRoleBinding" in text and "not permitted in project" in text else ""

    took = platform.wait(refusal, SYNC_FROM_GIT_TIMEOUT_S, "Argo CD refusing the ClusterRoleBinding (not permitted in project)")
    print(f"refused {took:.1f} s after the commit")
    assert platform.get("clusterrolebinding", "ci-bot-admin") is None
    platform.revert_last()
    platform.all_synced_healthy()
    assert platform.get("clusterrolebinding", "ci-bot-admin") is None


def test_an_application_in_argo_cds_default_project_syncs_nothing(platform: Platform):
    """`default` would bypass both projects: bootstrap empties it, so an Application naming it is refused."""
    root = platform.get("-n", "argocd", "applications.argoproj.io", ROOT_APP)
    assert root is not None
    rogue = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "rogue", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {**root["spec"]["source"], "path": "charts/network-policies", "helm": {}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "kube-system"},
            "syncPolicy": {"automated": {}},
        },
    }
    platform.kubectl("apply", "-f", "-", stdin=json.dumps(rogue))
    try:

        def refused() -> str:
            app = platform.get("-n", "argocd", "applications.argoproj.io", "rogue") or {}
            conditions = (app.get("status") or {}).get("conditions") or []
            return " ".join(c.get("message", "") for c in conditions if c.get("type") == "InvalidSpecError")

        platform.wait(refused, 120, "an InvalidSpecError on the Application in project default")
        print("default project:", refused()[:300])
        assert "not permitted" in refused()
        assert (platform.get("-n", "kube-system", "networkpolicies") or {}).get("items") == []
    finally:
        platform.kubectl("delete", "-n", "argocd", "applications.argoproj.io", "rogue", "--wait=false")


@pytest.mark.skipif(os.geteuid() != 0, reason="the real node needs root (CI runs as root)")
def test_pods_whose_images_were_built_here_run_for_real_ready_by_their_own_probes(platform: Platform):
    """The platform as Argo CD synced it: which pods run for real (the real node) and which are simulated (kwok)."""
    pods = platform.get("pods", "--all-namespaces")["items"]
    rows = []
    for pod in pods:
        node = pod["spec"].get("nodeName", "")
        statuses = pod["status"].get("containerStatuses", [])
        # A Job's pod that finished (CloudNativePG's initdb) counts as ready.
        ready = is_ready(pod) or pod["status"].get("phase") == "Succeeded"
        rows.append(
            (
                "real" if node == REAL_NODE else "simulated",
                f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
                node,
                " ".join(s.get("imageID", "") or s["image"] for s in statuses),
                sum(s.get("restartCount", 0) for s in statuses),
                ready,
            )
        )
    print("\nkind       pod                                                node               restarts ready image")
    for kind, name, node, image, restarts, ready in sorted(rows):
        print(f"{kind:10} {name:58} {node:18} {restarts:8} {ready!s:5} {image}")
    real = [name for kind, name, *_ in rows if kind == "real"]
    # Valkey, PostgreSQL and its operator, MinIO, the KubeRay operator, MLflow: their images rebuilt at `up`.
    expected_real = (
        "polyp/frontend-",
        "polyp/redis-",
        "kube-system/coredns-",
        "cnpg-system/cloudnative-pg-",
        "polyp/platform-db-1",
        "minio/minio-",
        "ray-system/kuberay-operator-",
        "polyp/mlflow-",
    )
    for expected in expected_real:
        assert any(n.startswith(expected) for n in real), (expected, real)
    for kind, name, node, _, restarts, ready in rows:
        if kind == "real":
            assert ready and restarts == 0, f"{name} on {node}: ready={ready}, restarts={restarts}"
        else:
            assert node.startswith("kwok-node-"), f"{name} on {node}"
