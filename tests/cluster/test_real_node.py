"""The real node of the local cluster: an image built here without Docker runs as a real pod, as its chart renders it.

What is real here: containerd + runc, the kubelet and kube-proxy (built from the pinned Kubernetes module), the
CNI bridge, kube-router enforcing NetworkPolicies, CoreDNS (built from its pinned module) as a real pod, the
frontend image (bootstrap/build-images.sh: buildah, Debian-built bases where no registry answers), its probes,
Services' ClusterIPs and DNS names, Valkey, PostgreSQL under the real CloudNativePG operator (its binary built
from the pinned module; the PostgreSQL image rebuilt from Debian's PostgreSQL 17), MinIO and the chart's mc Jobs
(built from the pinned release commits), MLflow (from PyPI, hash-locked) on them, the KubeRay operator and the
training RayCluster's head and worker it creates (the training image, torch included), the control service, Ready
on Valkey, PostgreSQL, MLflow and the Ray job API, and dev's RayService (Ray Serve on the training image). On them
the loop runs under the platform's NetworkPolicies: dataset pushed to MinIO, run triggered through nginx, trained
on the Ray pods, registered in MLflow, published to MinIO, pinned with `polyp-gitops pin-model`, served by the
RayService, a prediction through nginx, alert over SSE. A broken command, env var or probe keeps a copy of the
control service from ever becoming Ready. Stood in for, in the frontend's own test only (it comes first): the
control service, by a Service whose endpoint is a plain HTTP server inside the node's network namespace; the real
control service takes that Service over later. Not here: Argo CD (test_gitops_live.py syncs dev with it, on
simulated pods but for the frontend), kube-prometheus-stack, Grafana, cert-manager and KServe (simulated there).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from PIL import Image

import polyp_fixtures
from polyp_gitops.render import DEFAULT_REPO_URL, render_application, render_applications
from polyp_gitops.s3_access import access_level

from ..manifests.test_storage_access import ACCESS, BUCKETS
from .conftest import REPO, build_images, git, is_ready, local_cluster, run_kubectl, snapshot_repository

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="a real node needs root (containerd, runc, iptables); CI runs as root"),
]

NODE = "polyp-real-node"
NAMESPACE = "polyp"


def _dev_objects(component: str, root: Path = REPO) -> list[dict]:
    """A component's objects as Argo CD applies them in dev from the repository at root (it ignores Helm's test hooks)."""
    app = next(a for a in render_applications("dev", root) if a["metadata"]["name"] == component)
    objects = render_application(app, DEFAULT_REPO_URL, root).objects
    return [o for o in objects if "test" not in o["metadata"].get("annotations", {}).get("helm.sh/hook", "")]


def _frontend_objects() -> list[dict]:
    return _dev_objects("frontend")


OUR_IMAGES = ("frontend", "control-service", "training")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real-node")
    archives = tmp / "images"
    build_images(archives, *OUR_IMAGES)
    with local_cluster(tmp / "cluster") as (env, exports):
        polyp_cluster = str(Path(sys.executable).parent / "polyp-cluster")
        began = time.monotonic()
        subprocess.run([polyp_cluster, "load", *(str(archives / f"{c}.tar") for c in OUR_IMAGES)], env=env, check=True)
        print(f"{', '.join(OUR_IMAGES)} loaded in {time.monotonic() - began:.0f} s", flush=True)
        shutil.rmtree(archives)  # the node's containerd holds them now (the training archive alone is 3.7 GB)
        kubectl = lambda *args, **kw: run_kubectl(exports["KUBECONFIG"], env, *args, **kw)  # noqa: E731
        yield env, exports, kubectl, tmp / "cluster"


def _apply_dev(kubectl, component: str, namespace: str, *flags: str) -> list[dict]:
    """Apply a component's objects as dev renders them; those objects."""
    return _apply(kubectl, _dev_objects(component), namespace, *flags)


def _apply(kubectl, objects: list[dict], namespace: str, *flags: str) -> list[dict]:
    """Apply rendered objects, each in its namespace as Argo CD places it (its own, else the Application's
    `namespace`: the control service's dashboard goes to Grafana's); those objects."""
    by_namespace: dict[str, list[dict]] = {}
    for obj in objects:
        by_namespace.setdefault(obj["metadata"].get("namespace") or namespace, []).append(obj)
    for target, items in by_namespace.items():
        if target != namespace:
            kubectl("create", "namespace", target, check=False)
        kubectl("apply", *flags, "-n", target, "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return objects


def _pod(kubectl, selector: str, namespace: str = NAMESPACE) -> dict | None:
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]
    return pods[0] if pods else None


def _ready_pod(kubectl, what: str, selector: str, namespace: str = NAMESPACE, timeout_s: float = 180) -> dict:
    """Wait until the pod that selector matches in namespace is Ready; that pod."""

    def ready():
        pod = _pod(kubectl, selector, namespace)
        return pod if is_ready(pod) else None

    return _wait(ready, timeout_s, f"{what} Ready")


def _volume_folder(kubectl, pod: dict) -> Path:
    """The host folder behind the pod's claim (kwok binds every claim to a hostPath)."""
    namespace = pod["metadata"]["namespace"]
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v)
    volume = json.loads(kubectl("get", "pvc", "-n", namespace, claim, "-o", "json").stdout)["spec"]["volumeName"]
    return Path(json.loads(kubectl("get", "pv", volume, "-o", "json").stdout)["spec"]["hostPath"]["path"])


def _wait(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _in_node_args(state_dir: Path, *args: str) -> list[str]:
    """args, run in the real node's network namespace (where pod and Service addresses are routed)."""
    pid = json.loads((state_dir / "state.json").read_text())["pids"]["node-netns"]
    return ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *args]


def _curl(state_dir: Path, url: str) -> str:
    """Status line, headers and body from inside the node; "" when the connection fails."""
    command = _in_node_args(state_dir, "curl", "-si", "-m", "5", url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return result.stdout if result.returncode == 0 else ""


def _service_url(kubectl, namespace: str, name: str) -> str:
    """http://CLUSTER-IP:PORT of a Service's first port: reachable from inside the node, as from any pod."""
    spec = json.loads(kubectl("get", "service", "-n", namespace, name, "-o", "json").stdout)["spec"]
    return f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}"


def _frontend_url(kubectl, frontend) -> str:
    _, objects = frontend
    return _service_url(kubectl, NAMESPACE, next(o for o in objects if o["kind"] == "Service")["metadata"]["name"])


def test_the_real_node_joins_the_kwok_nodes_tainted(cluster):
    _, _, kubectl, _ = cluster
    nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    assert len(nodes) == 3
    real = nodes[NODE]
    assert real["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert {"key": "polyp.dev/real-node", "value": "true", "effect": "NoExecute"} in real["spec"]["taints"]
    assert "kwok.x-k8s.io/node" not in real["metadata"].get("annotations", {})
    for node in nodes.values():
        assert is_ready(node), node["metadata"]["name"]


def test_cluster_dns_runs_for_real_on_the_real_node(cluster):
    _, _, kubectl, _ = cluster
    [pod] = json.loads(kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "json").stdout)["items"]
    assert pod["spec"]["nodeName"] == NODE
    assert is_ready(pod)
    # CoreDNS reached the API server as a pod does: the `kubernetes` Service, through kube-proxy and the relay.
    assert "Kubernetes API connection failure" not in kubectl("logs", "-n", "kube-system", pod["metadata"]["name"]).stdout


@pytest.fixture(scope="module")
def frontend(cluster):
    """The frontend deployed as dev renders it, and a stand-in control service; (its Ready pod, the rendered objects)."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    # The control service stand-in: a Service without selector whose endpoint is an HTTP server on the node.
    node_ip = json.loads(kubectl("get", "node", NODE, "-o", "json").stdout)["status"]["addresses"][0]["address"]
    stand_in = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "control-service", "namespace": NAMESPACE},
                "spec": {"ports": [{"port": 8000, "targetPort": 18000}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "control-service", "namespace": NAMESPACE},
                "subsets": [{"addresses": [{"ip": node_ip}], "ports": [{"port": 18000}]}],
            },
        ],
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(stand_in))
    objects = _apply_dev(kubectl, "frontend", NAMESPACE)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    return _ready_pod(kubectl, "the frontend pod", selector), objects


def test_the_frontend_runs_for_real_ready_by_its_own_probe(cluster, frontend):
    _, _, kubectl, state_dir = cluster
    pod, objects = frontend
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    node_ip = json.loads(kubectl("get", "node", NODE, "-o", "json").stdout)["status"]["addresses"][0]["address"]
    [status] = pod["status"]["containerStatuses"]
    print(f"\nfrontend pod: real, node {pod['spec']['nodeName']}, image {status['image']}")
    print(f"  digest {status['imageID']}, restarts {status['restartCount']}")
    assert pod["spec"]["nodeName"] == NODE, "placement: its image is loaded, so it runs for real"
    assert status["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert status["restartCount"] == 0
    # The API server reaches the kubelet (logs, exec); in the container: uid 101, a read-only root filesystem, and
    # the control service's Service name resolves through the cluster DNS (nginx needed it to start at all).
    name = pod["metadata"]["name"]
    assert "start worker process" in kubectl("logs", "-n", NAMESPACE, name).stdout
    assert kubectl("exec", "-n", NAMESPACE, name, "--", "id", "-u").stdout.strip() == "101"
    assert kubectl("exec", "-n", NAMESPACE, name, "--", "touch", "/x", check=False).returncode != 0
    control_ip = json.loads(kubectl("get", "service", "-n", NAMESPACE, "control-service", "-o", "json").stdout)["spec"][
        "clusterIP"
    ]
    resolved = kubectl("exec", "-n", NAMESPACE, name, "--", "getent", "hosts", "control-service.polyp.svc.cluster.local").stdout
    assert resolved.split()[0] == control_ip

    # Through the frontend's Service (kube-proxy's NAT on the node) the page is served with its headers, and
    # /v1/ reaches the control service's Service.
    page_url = _frontend_url(kubectl, frontend)
    stand_in_root = state_dir.parent / "stand-in"
    (stand_in_root / "v1").mkdir(parents=True)
    (stand_in_root / "v1" / "ping").write_text("pong from the control service's Service")
    server = subprocess.Popen(
        _in_node_args(
            state_dir, sys.executable, "-m", "http.server", "--bind", node_ip, "18000", "--directory", str(stand_in_root)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page = _wait(lambda: _curl(state_dir, f"{page_url}/"), 30, "the page through the frontend's Service")
        assert page.splitlines()[0].split()[1] == "200", page
        assert "Content-Security-Policy: default-src 'self'" in page and "X-Frame-Options: DENY" in page
        assert "<html" in page.lower()
        proxied = _wait(
            lambda: "pong" in (body := _curl(state_dir, f"{page_url}/v1/ping")) and body,
            30,
            "/v1/ through nginx to the control service's Service",
        )
        assert proxied.splitlines()[0].split()[1] == "200", proxied
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_pod_whose_image_is_not_loaded_stays_simulated(cluster):
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", "simulated")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "elsewhere", "namespace": "simulated"},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/not-loaded:1.0.0"}]},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    node = _wait(
        lambda: json.loads(kubectl("get", "pod", "-n", "simulated", "elsewhere", "-o", "json").stdout)["spec"].get("nodeName"),
        60,
        "scheduled",
    )
    assert node.startswith("kwok-node-")


def _client_phase(kubectl, namespace: str, name: str, container: dict, labels: dict | None = None, timeout_s: float = 60) -> str:
    """Run a one-shot real pod (in namespace, created if need be) until it ends: Succeeded or Failed."""
    kubectl("create", "namespace", namespace, check=False)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "client", **container}]},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod))

    def finished():
        phase = json.loads(kubectl("get", "pod", "-n", namespace, name, "-o", "json").stdout)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    return _wait(finished, timeout_s, f"{namespace}/{name}")


def _connect_from(kubectl, namespace: str, name: str, target: str) -> str:
    """A real pod (the frontend image, which has bash) that opens a TCP connection to target, 5 tries; its phase."""
    image = next(
        c["image"] for o in _frontend_objects() if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]
    )
    host, port = target.rsplit(":", 1)
    command = ["bash", "-c", _five_tries(f"timeout 3 bash -c 'echo > /dev/tcp/{host}/{port}'")]
    return _client_phase(kubectl, namespace, name, {"image": image, "command": command}, timeout_s=90)


def test_network_policies_are_enforced(cluster, frontend):
    """kube-router enforces them: a default-deny namespace refuses a pod from elsewhere, its allow rule admits one."""
    _, _, kubectl, _ = cluster
    target = "frontend.polyp.svc.cluster.local:8080"
    assert _connect_from(kubectl, "elsewhere", "before", target) == "Succeeded"  # nothing denies yet
    policies = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": NAMESPACE},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "frontend-from-allowed", "namespace": NAMESPACE},
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "allowed"}}}],
                            "ports": [{"port": 8080}],
                        }
                    ],
                },
            },
        ],
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(policies))
    try:
        # kube-router programs iptables once it sees the change: a few tries, a new pod each.
        attempts = iter(range(10))
        _wait(lambda: _connect_from(kubectl, "elsewhere", f"after-{next(attempts)}", target) == "Failed", 60, "denied")
        assert _connect_from(kubectl, "allowed", "after", target) == "Succeeded"
    finally:
        kubectl("delete", "-f", "-", stdin=json.dumps(policies))


def test_a_daemonset_that_tolerates_every_noschedule_taint_stays_off_the_real_node(cluster):
    """node-exporter's way: tolerating NoSchedule must not bring a pod whose image is not here to the real node."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", "daemons", check=False)
    labels = {"app": "everywhere"}
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "everywhere", "namespace": "daemons"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "c", "image": "example.invalid/exporter:1.0.0"}],
                },
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(daemonset))

    def scheduled():
        status = json.loads(kubectl("get", "daemonset", "-n", "daemons", "everywhere", "-o", "json").stdout).get("status", {})
        return status if status.get("observedGeneration") and status.get("currentNumberScheduled") is not None else None

    assert _wait(scheduled, 60, "the DaemonSet scheduled")["desiredNumberScheduled"] == 2  # the two kwok nodes
    pods = json.loads(kubectl("get", "pods", "-n", "daemons", "-o", "json").stdout)["items"]
    assert NODE not in {p["spec"].get("nodeName") for p in pods}


VALKEY_IMAGE = "docker.io/valkey/valkey:9.1.1"  # as the valkey chart renders it; rebuilt here (images.UPSTREAM_IMAGES)


@pytest.fixture(scope="module")
def redis(cluster, frontend):
    """Valkey as dev renders the valkey chart (component redis), on its image rebuilt from Debian; (pod, password)."""
    _, _, kubectl, _ = cluster
    password = secrets.token_hex(16)
    kubectl("create", "secret", "generic", "redis-users", "-n", NAMESPACE, f"--from-literal=default={password}")
    _apply_dev(kubectl, "redis", NAMESPACE)
    return _ready_pod(kubectl, "Valkey", "app.kubernetes.io/instance=redis"), password


def test_valkey_runs_for_real_and_keeps_its_data_in_its_volume(cluster, redis):
    """The chart's init script writes its config to the volume as uid 1000: the node's volumes are writable as kind's are."""
    _, _, kubectl, _ = cluster
    pod, password = redis
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE
    assert {c["image"] for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]} == {VALKEY_IMAGE}
    cli = ["exec", "-n", NAMESPACE, name, "--", "valkey-cli", "-a", password, "--no-auth-warning"]
    assert kubectl(*cli, "set", "polyp", "kept").stdout.strip() == "OK"
    assert kubectl(*cli, "save").stdout.strip() == "OK"
    folder = _volume_folder(kubectl, pod)
    dump = folder / "dump.rdb"
    assert dump.is_file() and dump.stat().st_uid == 1000, sorted(folder.iterdir())
    assert b"kept" in dump.read_bytes()


def _basic_auth_secret(kubectl, name: str, username: str, password: str) -> None:
    """A username and password Secret in our namespace, typed as install.sh makes it (its secret_type)."""
    keys = [f"--from-literal=username={username}", f"--from-literal=password={password}"]
    kubectl("create", "secret", "generic", name, "-n", NAMESPACE, "--type=kubernetes.io/basic-auth", *keys)


POSTGRES_IMAGE = "ghcr.io/cloudnative-pg/postgresql:17.5"  # charts/database imageName; rebuilt here from Debian


def _cluster_status(kubectl, name: str = "platform-db") -> dict:
    return json.loads(kubectl("get", "clusters.postgresql.cnpg.io", "-n", NAMESPACE, name, "-o", "json").stdout).get("status", {})


@pytest.fixture(scope="module")
def database(cluster):
    """The real CloudNativePG operator (the cloudnative-pg chart as dev renders it, its binary built from the pinned
    module) and the PostgreSQL cluster dev declares (charts/database), with the scheduler role's Secret install.sh
    makes; the operator's pod once Ready."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    _basic_auth_secret(kubectl, "platform-db-scheduler", "scheduler", secrets.token_hex(16))
    kubectl("create", "namespace", "cnpg-system")
    _apply_dev(kubectl, "cloudnative-pg", "cnpg-system", "--server-side")
    _apply_dev(kubectl, "database", NAMESPACE)
    operator_pod = _ready_pod(kubectl, "the CloudNativePG operator", "app.kubernetes.io/name=cloudnative-pg", "cnpg-system")
    _wait(lambda: _cluster_status(kubectl).get("readyInstances") == 1, 300, "platform-db's instance Ready")
    scheduler = ["get", "databases.postgresql.cnpg.io", "-n", NAMESPACE, "platform-db-scheduler", "-o", "json"]
    _wait(lambda: json.loads(kubectl(*scheduler).stdout).get("status", {}).get("applied"), 60, "the scheduler Database applied")
    return operator_pod


def test_postgresql_runs_for_real_under_the_real_cloudnative_pg_operator(cluster, database):
    """No kwok stage writes this status: the operator ran initdb in a Job, started the instance and created the
    databases MLflow and the control service use, each owned by its own role (the scheduler's a role the operator
    manages, its password from install.sh's Secret); neither role can read or write the other's tables."""
    _, _, kubectl, _ = cluster
    assert database["spec"]["nodeName"] == NODE
    status = _cluster_status(kubectl)
    assert status["phase"] == "Cluster in healthy state", status
    assert "kwok" not in json.dumps(status)
    primary = ["get", "pods", "-n", NAMESPACE, "-l", "cnpg.io/instanceRole=primary", "-o", "json"]
    [pod] = json.loads(kubectl(*primary).stdout)["items"]
    assert pod["spec"]["nodeName"] == NODE and is_ready(pod)
    postgres = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "postgres")
    print(f"\nplatform-db primary: real, node {NODE}, image {postgres['image']}, restarts {postgres['restartCount']}")
    assert postgres["image"] == POSTGRES_IMAGE and postgres["restartCount"] == 0
    # The instance manager's own psql over its socket, as uid 26.
    psql = ["exec", "-n", NAMESPACE, pod["metadata"]["name"], "-c", "postgres", "--", "psql", "-h", "/controller/run", "-tAc"]
    owners = kubectl(*psql, "select datname || ':' || pg_get_userbyid(datdba) from pg_database").stdout.split()
    assert {"mlflow:mlflow", "scheduler:scheduler"} <= set(owners), owners
    assert kubectl(*psql, "select current_setting('server_version_num')::int / 10000").stdout.strip() == "17"

    def as_role(user: str, secret: str, database: str, sql: str, password: str | None = None) -> dict:
        """A client through the read-write Service, as the control service and MLflow connect."""
        from_secret = {"valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}
        env = [{"name": "PGPASSWORD", **({"value": password} if password else from_secret)}]
        command = ["psql", "-v", "ON_ERROR_STOP=1", "-h", "platform-db-rw", "-U", user, "-d", database, "-tAc", sql]
        return {"image": POSTGRES_IMAGE, "command": command, "env": env}

    scheduler = functools.partial(as_role, "scheduler", "platform-db-scheduler", "scheduler")

    def scheduler_logs_in() -> bool:  # the operator sets the managed role's password from the Secret as it reconciles
        return _client_phase(kubectl, NAMESPACE, f"psql-scheduler-{secrets.token_hex(3)}", scheduler("select 1")) == "Succeeded"

    _wait(scheduler_logs_in, 180, "the scheduler role logs in with its Secret's password")
    assert _client_phase(kubectl, NAMESPACE, "psql-wrong-password", scheduler("select 1", "not-the-password")) == "Failed"
    create = "create table probe (job bytea); insert into probe values ('\\x00')"
    assert _client_phase(kubectl, NAMESPACE, "psql-scheduler-table", scheduler(create)) == "Succeeded"
    # MLflow's role (the initdb owner, Secret platform-db-app) reaches neither the scheduler's rows nor its schema.
    mlflow = functools.partial(as_role, "mlflow", "platform-db-app", "scheduler")
    for name, sql in (
        ("read", "select * from probe"),
        ("write", "insert into probe values (null)"),
        ("create", "create table x (y int)"),
    ):
        assert _client_phase(kubectl, NAMESPACE, f"psql-mlflow-{name}", mlflow(sql)) == "Failed", name
        assert "permission denied" in kubectl("logs", "-n", NAMESPACE, f"psql-mlflow-{name}").stdout, name
    assert (
        _client_phase(kubectl, NAMESPACE, "psql-mlflow-own", as_role("mlflow", "platform-db-app", "mlflow", "select 1"))
        == "Succeeded"
    )
    kubectl(*psql[:-1], "-d", "scheduler", "-c", "drop table probe")


MINIO_IMAGE = "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"  # apps/values.yaml; rebuilt here (go/minio)
MC_IMAGE = "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"  # the chart's bucket and user Jobs; rebuilt here (go/mc)


# MinIO's users as dev renders them (access key -> the Secret install.sh makes for it; tests/manifests/test_storage_access).
MINIO_USERS = {"training": "s3-training", "serving": "s3-serving", "mlflow": "s3-mlflow", "dataset-publisher": "s3-datasets"}


def _s3_user_secret(kubectl, namespace: str, user: str, secret_key: str) -> None:
    keys = [f"--from-literal=AWS_ACCESS_KEY_ID={user}", f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}"]
    kubectl("create", "secret", "generic", MINIO_USERS[user], "-n", namespace, *keys)


@pytest.fixture(scope="module")
def minio(cluster) -> dict[str, str]:
    """MinIO as dev renders the minio chart, with the Secrets install.sh makes; each user's secret key once the
    server is Ready and the chart's post-install Job (buckets, policies, one user per component) is done."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", "minio", check=False)
    keys = {user: secrets.token_hex(16) for user in MINIO_USERS}
    root = ["--from-literal=rootUser=minio-admin", f"--from-literal=rootPassword={secrets.token_hex(16)}"]
    kubectl("create", "secret", "generic", "minio-root", "-n", "minio", *root)
    for user, secret_key in keys.items():
        _s3_user_secret(kubectl, "minio", user, secret_key)
    _apply_dev(kubectl, "minio", "minio")

    def job_done():
        status = json.loads(kubectl("get", "job", "-n", "minio", "minio-post-job", "-o", "json").stdout).get("status", {})
        assert not status.get("failed"), status
        return status.get("succeeded")

    _wait(job_done, 240, "the minio chart's post-install Job")
    return keys


# As the chart's Jobs run mc: uid 1000, its configuration in a writable folder.
_MC_AS_THE_CHART_RUNS_IT = {"image": MC_IMAGE, "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True}}


def _mc_env(**values: str) -> list[dict]:
    return [{"name": name, "value": value} for name, value in {"MC_CONFIG_DIR": "/tmp/.mc", **values}.items()]


def _mc(script: str, keys: dict[str, str], *users: str) -> dict:
    """A container of the chart's mc image with an alias per user (named as the user, its credentials only)."""
    env = {f"KEY_{i}": keys[user] for i, user in enumerate(users)}
    aliases = [
        f'mc alias set {user} http://minio.minio.svc.cluster.local:9000 {user} "$KEY_{i}" >/dev/null'
        for i, user in enumerate(users)
    ]
    return {**_MC_AS_THE_CHART_RUNS_IT, "command": ["bash", "-c", " && ".join([*aliases, script])], "env": _mc_env(**env)}


def test_minio_runs_for_real_and_a_user_writes_only_with_its_key(cluster, minio):
    """The server built from the pinned release's commit serves S3 from its real volume; the chart's Job gave the
    training user its policy (an mc killed for memory there once left a user without); anonymous reads fail."""
    _, _, kubectl, _ = cluster
    [pod] = json.loads(kubectl("get", "pods", "-n", "minio", "-l", "app=minio", "-o", "json").stdout)["items"]
    [status] = pod["status"]["containerStatuses"]
    print(f"\nminio: real, node {pod['spec']['nodeName']}, image {status['image']}, restarts {status['restartCount']}")
    assert pod["spec"]["nodeName"] == NODE and is_ready(pod)
    assert status["image"] == MINIO_IMAGE and status["restartCount"] == 0
    version = kubectl("exec", "-n", "minio", pod["metadata"]["name"], "--", "minio", "--version").stdout
    assert "RELEASE.2025-09-07T16-13-09Z" in version, version
    write = _mc(
        "echo kept > /tmp/probe && mc cp /tmp/probe training/models/probe.txt && mc cat training/models/probe.txt",
        minio,
        "training",
    )
    assert _client_phase(kubectl, "minio", "mc-platform-user", write) == "Succeeded"
    logs = kubectl("logs", "-n", "minio", "mc-platform-user").stdout
    assert logs.strip().endswith("kept"), logs
    # Without keys: MinIO refuses to say what is there.
    no_keys = 'mc alias set anon http://minio.minio.svc.cluster.local:9000 "" "" >/dev/null && mc cat anon/models/probe.txt'
    anonymous = {**_MC_AS_THE_CHART_RUNS_IT, "command": ["bash", "-c", no_keys], "env": _mc_env()}
    assert _client_phase(kubectl, "minio", "mc-anonymous", anonymous) == "Failed"
    assert "Insufficient permissions" in kubectl("logs", "-n", "minio", "mc-anonymous").stdout
    # The object is on the claim's real volume (hostPath), written by uid 1000.
    folder = _volume_folder(kubectl, pod)
    stored = folder / "models" / "probe.txt" / "xl.meta"
    assert stored.is_file() and stored.stat().st_uid == 1000, sorted(p.name for p in folder.iterdir())


def test_each_minio_user_reaches_only_its_buckets(cluster, minio):
    """The real server enforces the policies the chart's Job created: every user tries to write, list and read in
    every bucket (reading what that bucket's writer put there), and gets exactly tests/manifests' ACCESS matrix."""
    _, _, kubectl, _ = cluster
    writer = {bucket: next(u for u, grants in ACCESS.items() if grants.get(bucket) == "write") for bucket in BUCKETS}
    users, buckets = " ".join(MINIO_USERS), " ".join(BUCKETS)
    script = f"""
        for u in {users}; do for b in {buckets}; do
            echo "$u" | mc pipe "$u/$b/probe-$u" >/dev/null 2>&1 && echo "write $u $b"
        done; done
        declare -A writer=({" ".join(f"[{b}]={w}" for b, w in writer.items())})
        for u in {users}; do for b in {buckets}; do
            mc ls "$u/$b" >/dev/null 2>&1 && mc cat "$u/$b/probe-${{writer[$b]}}" >/dev/null 2>&1 && echo "read $u $b"
        done; done
        true"""
    assert _client_phase(kubectl, "minio", "mc-each-user", _mc(script, minio, *MINIO_USERS), timeout_s=180) == "Succeeded"
    seen = {tuple(line.split()) for line in kubectl("logs", "-n", "minio", "mc-each-user").stdout.splitlines()}
    granted = {}
    for user in MINIO_USERS:
        for bucket in BUCKETS:
            granted.setdefault(user, {})[bucket] = access_level(("read", user, bucket) in seen, ("write", user, bucket) in seen)
    print(f"\nMinIO, what each user could do: {granted}")
    assert granted == {user: {b: ACCESS[user].get(b, "none") for b in BUCKETS} for user in MINIO_USERS}


@pytest.fixture(scope="module")
def s3_credentials(cluster, minio):
    """The S3 Secrets of training, serving and MLflow in our namespace, as install.sh copies them there."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    for user in ("training", "serving", "mlflow"):
        _s3_user_secret(kubectl, NAMESPACE, user, minio[user])


# MLflow's users (the Secrets install.sh makes, keys username and password): the server's admin, and the two the
# MLflow pod's init container creates.
MLFLOW_USERS = {"admin": "mlflow-admin", "training": "mlflow-training", "control-service": "mlflow-control-service"}


@pytest.fixture(scope="module")
def mlflow_credentials(cluster) -> dict[str, str]:
    """user -> password, in the basic-auth Secrets install.sh makes (the Ray pods, the control service and MLflow's
    init container read them)."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    passwords = {user: secrets.token_hex(16) for user in MLFLOW_USERS}
    for user, secret in MLFLOW_USERS.items():
        _basic_auth_secret(kubectl, secret, user, passwords[user])
    return passwords


@pytest.fixture(scope="module")
def kuberay(cluster, s3_credentials, mlflow_credentials):
    """The real KubeRay operator as dev renders the kuberay-operator chart, and the RayCluster dev declares (charts/
    training), with the Secret install.sh makes; the operator's, the Ray head's and the worker's pods once Ready."""
    _, _, kubectl, _ = cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("create", "namespace", "ray-system")
    _apply_dev(kubectl, "kuberay-operator", "ray-system", "--server-side")
    operator_pod = _ready_pod(kubectl, "the KubeRay operator", "app.kubernetes.io/name=kuberay-operator", "ray-system")
    _apply_dev(kubectl, "training", NAMESPACE)
    ray = "ray.io/cluster=training,ray.io/node-type"
    return {
        "operator": operator_pod,
        "head": _ready_pod(kubectl, "the Ray head", f"{ray}=head", timeout_s=300),
        "worker": _ready_pod(kubectl, "the Ray worker", f"{ray}=worker", timeout_s=300),
    }


def test_the_real_kuberay_operator_creates_and_tracks_the_training_raycluster(cluster, kuberay):
    """No kwok stage writes the RayCluster's status: the operator (v1.6.2 under the 1.7.0 chart's tag, run with that
    chart's arguments) made the head, its Service and the worker, and reports them ready. The Ray pods run the
    training image for real, Ready by the probes the operator gave them, and the worker joined the head's Ray.
    The job API takes only the token the operator generated (the control service's, from the same Secret)."""
    _, _, kubectl, state_dir = cluster
    operator = kuberay["operator"]
    assert operator["spec"]["nodeName"] == NODE
    [status] = operator["status"]["containerStatuses"]
    print(f"\nkuberay-operator: real, node {NODE}, image {status['image']}, restarts {status['restartCount']}")
    assert status["restartCount"] == 0
    # The chart passes gates v1.6.2 lacks; without /manager's filter the operator exits at start (CrashLoopBackOff).
    [container] = operator["spec"]["containers"]
    assert any("RayClusterNetworkPolicy=false" in arg for arg in container["args"]), container["args"]

    def ready():
        raycluster = json.loads(kubectl("get", "raycluster", "-n", NAMESPACE, "training", "-o", "json").stdout)
        return raycluster if raycluster.get("status", {}).get("state") == "ready" else None

    raycluster = _wait(ready, 120, "the training RayCluster ready")
    assert "kwok" not in json.dumps(raycluster["status"])
    pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", "ray.io/cluster=training", "-o", "json").stdout)["items"]
    assert sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods) == ["head", "worker"]
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "RayCluster" for p in pods)
    for pod in pods:
        role = pod["metadata"]["labels"]["ray.io/node-type"]
        for status in pod["status"]["containerStatuses"]:
            print(f"ray {role} {status['name']}: real, node {pod['spec']['nodeName']}, image {status['image']}")
            print(f"  digest {status['imageID']}, restarts {status['restartCount']}")
            assert status["restartCount"] == 0
        assert pod["spec"]["nodeName"] == NODE and is_ready(pod)
        ray_container = next(c for c in pod["spec"]["containers"] if c["name"] == f"ray-{role}")
        assert "readinessProbe" in ray_container, "KubeRay's own probe (its wget calls to the raylet and the GCS)"
    # Ray itself counts the worker: it joined the head's GCS through the head's Service.
    head = next(p["metadata"]["name"] for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head")
    count = "import ray; ray.init(address='auto', logging_level='ERROR'); print('alive', sum(n['Alive'] for n in ray.nodes()))"
    alive = kubectl("exec", "-n", NAMESPACE, head, "-c", "ray-head", "--", "python", "-c", count).stdout
    assert "alive 2" in alive, alive
    head_service = json.loads(kubectl("get", "service", "-n", NAMESPACE, "training-head-svc", "-o", "json").stdout)
    assert {p["port"] for p in head_service["spec"]["ports"]} >= {8265, 6379}
    # Ray's token auth (authOptions): the operator made the token's Secret; the job API refuses anyone without it.
    secret = json.loads(kubectl("get", "secret", "-n", NAMESPACE, "training", "-o", "json").stdout)
    token = base64.b64decode(secret["data"]["auth_token"]).decode()
    jobs = f"http://{kuberay['head']['status']['podIP']}:8265/api/jobs/"  # the head Service is headless
    answers = {who: _api(state_dir, jobs, t)[0] for who, t in (("none", ""), ("wrong", "not-the-token"), ("right", token))}
    print(f"Ray job API (token auth): {answers}")
    assert answers == {"none": 401, "wrong": 403, "right": 200}, answers


MLFLOW_IMAGE = "burakince/mlflow:3.15.1"  # as the mlflow chart renders it; rebuilt here (images.UPSTREAM_IMAGES)


@pytest.fixture(scope="module")
def mlflow(cluster, database, s3_credentials, mlflow_credentials):
    """MLflow as dev renders the mlflow chart, on the real PostgreSQL (its `mlflow` database) and the real MinIO
    (bucket `mlflow`), with the Secrets install.sh makes, behind MLflow's auth app; its pod once Ready."""
    _, _, kubectl, _ = cluster
    flask = f"--from-literal=MLFLOW_FLASK_SERVER_SECRET_KEY={secrets.token_hex(16)}"
    kubectl("create", "secret", "generic", "mlflow-flask", "-n", NAMESPACE, flask)
    _apply_dev(kubectl, "mlflow", NAMESPACE)
    return _ready_pod(kubectl, "MLflow", "app.kubernetes.io/name=mlflow", timeout_s=300)


_LOG_A_RUN = """
import mlflow, pathlib
mlflow.set_experiment("real-node")
with mlflow.start_run() as run:
    mlflow.log_metric("val_dice", 0.5)
    pathlib.Path("/tmp/model.txt").write_text("weights")
    mlflow.log_artifact("/tmp/model.txt")
client = mlflow.MlflowClient()
print("metric", client.get_run(run.info.run_id).data.metrics["val_dice"])
downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model.txt")
print("artifact", pathlib.Path(downloaded).read_text())
client.create_registered_model("real-node-model")  # a version of the run's artifact (no logged model here)
version = client.create_model_version("real-node-model", f"{run.info.artifact_uri}/model.txt", run.info.run_id).version
client.set_registered_model_alias("real-node-model", "champion", version)
print(f"run_id={run.info.run_id} version={version}")
"""

# What each identity may do with the registered model the training user made (one line per attempt).
_TRY_THE_REGISTRY = """
import mlflow
from mlflow.exceptions import MlflowException
client = mlflow.MlflowClient()
def attempt(what, call):
    try:
        call()
        print(what, "allowed")
    except MlflowException as error:
        print(what, error.error_code)
attempt("read", lambda: client.get_model_version_by_alias("real-node-model", "champion"))
attempt("move-alias", lambda: client.set_registered_model_alias("real-node-model", "champion", "1"))
first = lambda: client.get_model_version("real-node-model", "1")
attempt("register", lambda: client.create_model_version("real-node-model", first().source, first().run_id))
"""


def test_mlflow_runs_for_real_and_keeps_runs_in_postgresql_and_artifacts_in_minio(cluster, mlflow, minio, mlflow_credentials):
    """The chart's migration init container migrated the real `mlflow` database; training's user logs a run through
    the Service (metric in PostgreSQL, artifact proxied by the server into MinIO), reads both back, registers a
    version and moves its alias; the control service's user may only read it, and nobody without a user anything."""
    _, _, kubectl, _ = cluster
    [server] = mlflow["status"]["containerStatuses"]
    print(f"\nmlflow: real, node {mlflow['spec']['nodeName']}, image {server['image']}, restarts {server['restartCount']}")
    assert mlflow["spec"]["nodeName"] == NODE
    # The chart's short Docker Hub name: the kubelet reports it in full, and placement admits either.
    assert server["image"] == f"docker.io/{MLFLOW_IMAGE}" and server["restartCount"] == 0

    def client(script: str, user: str | None) -> dict:
        """The platform's own tracking URI (charts/control-service, charts/training), as `user`; fail fast, not retry."""
        env = {"MLFLOW_TRACKING_URI": "http://mlflow.polyp.svc.cluster.local:5000", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        if user:
            env |= {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": mlflow_credentials[user]}
        command = ["python", "-c", script]
        return {"image": MLFLOW_IMAGE, "command": command, "env": [{"name": k, "value": v} for k, v in env.items()],
                "securityContext": {"runAsUser": 1001, "runAsNonRoot": True}}  # fmt: skip

    assert _client_phase(kubectl, NAMESPACE, "mlflow-client", client(_LOG_A_RUN, "training"), timeout_s=180) == "Succeeded"
    logs = kubectl("logs", "-n", NAMESPACE, "mlflow-client").stdout
    assert "metric 0.5" in logs and "artifact weights" in logs, logs
    run_id = logs.split("run_id=", 1)[1].split()[0]
    # MLflow's auth app: the control service's user reads what training registered and changes nothing; without a
    # user nothing is answered.
    outcomes = {}
    for user in ("control-service", "training", None):
        name = f"mlflow-registry-as-{user or 'anonymous'}"
        _client_phase(kubectl, NAMESPACE, name, client(_TRY_THE_REGISTRY, user), timeout_s=180)
        outcomes[user or "anonymous"] = dict(line.split() for line in kubectl("logs", "-n", NAMESPACE, name).stdout.splitlines()
                                             if line.split()[:1] in (["read"], ["move-alias"], ["register"]))  # fmt: skip
    print(f"MLflow registry, per identity: {outcomes}")
    assert outcomes["control-service"] == {"read": "allowed", "move-alias": "PERMISSION_DENIED", "register": "PERMISSION_DENIED"}
    assert outcomes["training"] == {"read": "allowed", "move-alias": "allowed", "register": "allowed"}
    assert set(outcomes["anonymous"].values()) == {"UNAUTHENTICATED"}, outcomes["anonymous"]
    # The run is a row of the real database, and the artifact an object of the real bucket.
    primary = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", "cnpg.io/instanceRole=primary", "-o", "json").stdout)
    pod = primary["items"][0]["metadata"]["name"]
    psql = ["exec", "-n", NAMESPACE, pod, "-c", "postgres", "--", "psql", "-h", "/controller/run", "-d", "mlflow", "-tAc"]
    assert kubectl(*psql, f"select status from runs where run_uuid = '{run_id}'").stdout.strip() == "FINISHED"
    listing = _mc(f"mc ls --recursive mlflow/mlflow/ | grep {run_id}/artifacts/model.txt", minio, "mlflow")
    assert _client_phase(kubectl, "minio", "mc-mlflow-artifact", listing) == "Succeeded"


@pytest.fixture(scope="module")
def control_service(cluster, frontend, redis, database, mlflow, kuberay):
    """The control service as dev renders it, with the token Secrets install.sh makes; (its pod once Ready, the
    tokens). Its Service, applied over the frontend test's stand-in of the same name, keeps that Service's address
    (nginx resolved it at start)."""
    _, _, kubectl, _ = cluster
    tokens = {"write": secrets.token_hex(16), "read": secrets.token_hex(16)}
    for secret, token in (("control-api-token", tokens["write"]), ("control-api-read-token", tokens["read"])):
        kubectl("create", "secret", "generic", secret, "-n", NAMESPACE, f"--from-literal=token={token}")
    kubectl("delete", "endpoints", "-n", NAMESPACE, "control-service")  # the stand-in's; the Service's selector rules
    # kube-prometheus-stack stays simulated and its CRDs are not installed here: no ServiceMonitor, no PrometheusRule.
    objects = [o for o in _dev_objects("control-service") if o["kind"] not in ("ServiceMonitor", "PrometheusRule")]
    _apply(kubectl, objects, NAMESPACE)
    return _ready_pod(kubectl, "the control service", "app.kubernetes.io/name=control-service", timeout_s=240), tokens


def _readiness(kubectl, pod: dict) -> dict:
    """The control service's own /readyz answer, asked inside its container."""
    ask = "import urllib.request as u, urllib.error as e\ntry: print(u.urlopen('http://127.0.0.1:8000/readyz').read().decode())\n"
    ask += "except e.HTTPError as err: print(err.read().decode())"
    return json.loads(kubectl("exec", "-n", NAMESPACE, pod["metadata"]["name"], "--", "python", "-c", ask).stdout)


def test_the_control_service_runs_for_real_ready_on_valkey_postgresql_mlflow_and_ray(cluster, frontend, control_service):
    """Its image as make images builds it, its env as dev renders it: Ready by its own /readyz, which asks PostgreSQL
    and Valkey (required), MLflow and the Ray job API of the real head (reported); through the frontend's nginx, its
    API wants the token and takes the one from the Secret."""
    _, _, kubectl, state_dir = cluster
    pod, tokens = control_service
    [status] = pod["status"]["containerStatuses"]
    print(f"\ncontrol-service: real, node {pod['spec']['nodeName']}, image {status['image']}")
    print(f"  digest {status['imageID']}, restarts {status['restartCount']}")
    assert pod["spec"]["nodeName"] == NODE and status["restartCount"] == 0
    readiness = _readiness(kubectl, pod)
    assert readiness["ready"] and all(check["ok"] for check in readiness["checks"].values()), readiness
    assert readiness["checks"]["ray"]["address"] == "http://training-head-svc.polyp.svc.cluster.local:8265"
    assert readiness["checks"]["alerts"]["via"] == "redis", readiness
    runs = f"{_frontend_url(kubectl, frontend)}/v1/runs"
    status, body = _api(state_dir, runs)
    assert status == 401 and "missing bearer token" in body, body
    status, body = _api(state_dir, runs, tokens["read"])
    assert status == 200 and json.loads(body) == [], body


# Three ways a chart or image change breaks a pod, each applied to a copy of the control service's Deployment.
def _wrong_command(container: dict) -> None:
    container["command"] = ["polyp-contrl"]  # a typo: no such program in the image


def _env_var_dropped(container: dict) -> None:
    # REDIS_URL's $(REDIS_PASSWORD) stays unexpanded: Valkey refuses the password, and the alert bus is required
    container["env"] = [e for e in container["env"] if e["name"] != "REDIS_PASSWORD"]


def _probe_on_a_closed_port(container: dict) -> None:
    container["readinessProbe"]["httpGet"]["port"] = 8001  # the app listens on 8000


BREAKS = {"command": _wrong_command, "env": _env_var_dropped, "probe": _probe_on_a_closed_port}


@pytest.fixture
def broken_control_services(cluster, control_service):
    """A copy of the control service's Deployment per break, labelled apart so that no Service or policy of ours
    selects them; their pods once 30 s past their start (three readiness periods); removed after the test (each is
    otherwise a working replica: it would compete for the scheduler's lease during the loop)."""
    _, _, kubectl, _ = cluster
    [deployment] = [o for o in _dev_objects("control-service") if o["kind"] == "Deployment"]
    copies = []
    for what, breaks in BREAKS.items():
        copy = json.loads(json.dumps(deployment))
        labels = {"app.kubernetes.io/name": "control-service-broken", "polyp.dev/break": what}
        copy["metadata"] = {"name": f"control-service-broken-{what}", "namespace": NAMESPACE}
        copy["spec"]["selector"] = {"matchLabels": labels}
        copy["spec"]["template"]["metadata"]["labels"] = labels
        breaks(copy["spec"]["template"]["spec"]["containers"][0])
        copies.append(copy)
    items = {"apiVersion": "v1", "kind": "List", "items": copies}
    kubectl("apply", "-f", "-", stdin=json.dumps(items))

    def settled(what: str):
        pod = _pod(kubectl, f"polyp.dev/break={what}")
        [status] = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        if what == "command":  # it never starts: containerd cannot exec it
            return pod if status.get("restartCount", 0) >= 1 else None
        started = (status.get("state", {}).get("running") or {}).get("startedAt")
        return pod if status.get("started") and started and _age_s(started) > 30 else None

    try:
        yield {what: _wait(lambda w=what: settled(w), 240, f"the {what} break settled") for what in BREAKS}
    finally:
        kubectl("delete", "-f", "-", stdin=json.dumps(items))


def _age_s(timestamp: str) -> float:
    return time.time() - datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_broken_command_env_var_or_probe_keeps_the_control_service_from_ever_becoming_ready(
    cluster, control_service, broken_control_services
):
    """The real node is what catches these: on kwok each of these pods would be marked Ready. Each broken copy of
    the Deployment stays unready (so the loop, which waits for a Ready control service, would fail), for its own
    reason; the real one stays Ready beside them."""
    _, _, kubectl, _ = cluster
    command = broken_control_services["command"]
    [status] = command["status"]["containerStatuses"]
    print(f"\nbroken command: {json.dumps(status['lastState'])[:300]}")
    assert not is_ready(command)
    assert status["lastState"]["terminated"]["reason"] in ("StartError", "ContainerCannotRun"), status
    assert "polyp-contrl" in status["lastState"]["terminated"]["message"], status

    env = broken_control_services["env"]
    readiness = _readiness(kubectl, env)
    print(f"dropped REDIS_PASSWORD: /readyz says {readiness}")
    assert not is_ready(_pod(kubectl, "polyp.dev/break=env")) and not readiness["ready"]
    assert readiness["checks"]["alerts"] == {"ok": False, "required": True, "via": "redis"}, readiness
    assert readiness["checks"]["database"]["ok"] and readiness["checks"]["ray"]["ok"], readiness

    probe = broken_control_services["probe"]
    readiness = _readiness(kubectl, probe)
    events = kubectl(
        "get", "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={probe['metadata']['name']}"
    ).stdout
    print(f"readiness probe on 8001: the app says ready={readiness['ready']}; the kubelet: {events.splitlines()[-1:]}")
    assert readiness["ready"], "the app itself is fine: only its probe is wrong"
    assert not is_ready(_pod(kubectl, "polyp.dev/break=probe")) and "Readiness probe failed" in events and "8001" in events

    real, _ = control_service
    assert is_ready(json.loads(kubectl("get", "pod", "-n", NAMESPACE, real["metadata"]["name"], "-o", "json").stdout))


def _five_tries(check: str) -> str:
    """A shell script that runs check up to 5 times over ~20 s, exiting 0 at its first success.

    kube-router admits a new pod's address a moment after the pod appears, so one refused try proves nothing,
    and a pod that never gets through in that time is denied.
    """
    return f"for try in 1 2 3 4 5; do {check} && exit 0; sleep 1; done; exit 1"


def _valkey_ping_from(kubectl, namespace: str, name: str, labels: dict, password: str) -> str:
    """A real pod (the Valkey image: valkey-cli) with these labels that pings Valkey's Service, 5 tries: its phase."""
    ping = 'timeout 3 valkey-cli -h redis.polyp.svc.cluster.local -a "$PASSWORD" --no-auth-warning ping'
    script = _five_tries(f'[ "$({ping})" = PONG ]')
    container = {"image": VALKEY_IMAGE, "command": ["sh", "-c", script], "env": [{"name": "PASSWORD", "value": password}]}
    return _client_phase(kubectl, namespace, name, container, labels, timeout_s=90)


def _postgres_ready_from(kubectl, namespace: str, name: str, labels: dict) -> str:
    """A real pod (the PostgreSQL image: pg_isready) with these labels that asks platform-db-rw whether it accepts
    connections, 5 tries: its phase."""
    script = _five_tries("pg_isready -t 3 -h platform-db-rw.polyp.svc.cluster.local")
    return _client_phase(kubectl, namespace, name, {"image": POSTGRES_IMAGE, "command": ["sh", "-c", script]}, labels, 90)


def _minio_open_from(kubectl, namespace: str, name: str, labels: dict) -> str:
    """A real pod (the mc image: bash) with these labels that opens a TCP connection to MinIO's S3 port, 5 tries."""
    script = _five_tries("timeout 3 bash -c '</dev/tcp/minio.minio.svc.cluster.local/9000'")
    return _client_phase(kubectl, namespace, name, {**_MC_AS_THE_CHART_RUNS_IT, "command": ["bash", "-c", script]}, labels, 90)


def _platform_policies() -> dict:
    """charts/network-policies as dev renders it: default-deny in our namespaces, and an allow rule per call."""
    return {"apiVersion": "v1", "kind": "List", "items": _dev_objects("network-policies")}


def test_the_platform_network_policies_allow_exactly_the_calls_it_makes(
    cluster, frontend, redis, database, minio, control_service
):
    """charts/network-policies as dev renders it: the control service reaches Valkey and PostgreSQL, training
    reaches MinIO; a pod of another namespace, and a pod of ours that has no business there (the frontend), do not;
    the Ray job API refuses another namespace; the frontend stays Ready and serves, so does PostgreSQL, and the
    real control service stays Ready on Valkey, MLflow and Ray."""
    _, _, kubectl, state_dir = cluster
    _, password = redis
    control_service_pod, _ = control_service
    control_service = {"app.kubernetes.io/name": "control-service"}
    ray_job_api = "training-head-svc.polyp.svc.cluster.local:8265"
    assert _valkey_ping_from(kubectl, "elsewhere", "redis-before", {}, password) == "Succeeded", "nothing denies yet"
    assert _connect_from(kubectl, "elsewhere", "ray-before", ray_job_api) == "Succeeded", "nothing denies yet"
    kubectl("create", "namespace", "minio", check=False)
    policies = _platform_policies()
    kubectl("apply", "-f", "-", stdin=json.dumps(policies))
    try:
        attempts = iter(range(5))  # kube-router programs the policies a moment after it sees them: a new pod each try
        _wait(lambda: _valkey_ping_from(kubectl, "elsewhere", f"redis-{next(attempts)}", {}, password) == "Failed", 150, "denied")
        assert _valkey_ping_from(kubectl, NAMESPACE, "as-control-service", control_service, password) == "Succeeded"
        frontend_labels = {"app.kubernetes.io/name": "frontend"}
        assert _valkey_ping_from(kubectl, NAMESPACE, "as-frontend", frontend_labels, password) == "Failed"
        assert _postgres_ready_from(kubectl, "elsewhere", "postgres-elsewhere", {}) == "Failed"
        assert _postgres_ready_from(kubectl, NAMESPACE, "postgres-as-control-service", control_service) == "Succeeded"
        assert _postgres_ready_from(kubectl, NAMESPACE, "postgres-as-frontend", frontend_labels) == "Failed"
        assert _minio_open_from(kubectl, "elsewhere", "minio-elsewhere", {}) == "Failed"
        assert _minio_open_from(kubectl, NAMESPACE, "minio-as-training", {"app.kubernetes.io/name": "training"}) == "Succeeded"
        assert _minio_open_from(kubectl, NAMESPACE, "minio-as-frontend", frontend_labels) == "Failed"
        assert _connect_from(kubectl, "elsewhere", "ray-elsewhere", ray_job_api) == "Failed"
        # The page is open to anyone (its policy admits every source on 8080), and its probes still pass.
        pod, _ = frontend
        page = _curl(state_dir, f"{_frontend_url(kubectl, frontend)}/")
        assert page.startswith("HTTP/1.1 200"), page[:200]
        time.sleep(15)  # a few probe periods under the policies
        assert is_ready(json.loads(kubectl("get", "pod", "-n", NAMESPACE, pod["metadata"]["name"], "-o", "json").stdout))
        status = _cluster_status(kubectl)
        assert status["phase"] == "Cluster in healthy state" and status.get("readyInstances") == 1, status
        name = control_service_pod["metadata"]["name"]
        assert is_ready(json.loads(kubectl("get", "pod", "-n", NAMESPACE, name, "-o", "json").stdout))
        readiness = _readiness(kubectl, control_service_pod)
        assert readiness["ready"], readiness
    finally:
        kubectl("delete", "-f", "-", stdin=json.dumps(policies))


def _api(state_dir: Path, url: str, token: str = "", body: dict | None = None, upload: Path | None = None) -> tuple[int, str]:
    """One call to the control service's API from inside the node (anonymous without a token): (HTTP status, body);
    POST when there is a JSON body or a file to upload (multipart, as the page sends an image)."""
    args = ["curl", "-s", "-m", "30", "-w", "\n%{http_code}"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    if upload is not None:
        args += ["-F", f"file=@{upload}"]
    result = subprocess.run(_in_node_args(state_dir, *args, url), capture_output=True, text=True, timeout=60)
    text, _, status = result.stdout.rpartition("\n")
    return int(status or 0), text


def _sse_events(path: Path) -> list[dict]:
    return [json.loads(line[5:]) for line in path.read_text().splitlines() if line.startswith("data:")]


# Five real Kvasir-SEG frames train for a few epochs at a small size: the gate at 0 lets that model through (no
# model learns the floor's Dice from four frames); the run proves the path, not the recipe (docs/training.md).
LOOP_RUN = {"epochs": 3, "size": 64, "batch_size": 2, "dice_threshold": 0.0}


def _serve_the_pinned_version(kubectl, state_dir: Path, api: str, token: str, version: str, samples: Path) -> None:
    """The serving half of the loop: `polyp-gitops pin-model` commits the version and its digest (from MLflow) to a
    clone of this repository; the inference Application rendered from that commit (the RayService on the training
    image, backend rayserve in dev) is applied as Argo CD would apply it; KubeRay starts its real head and worker,
    Ray Serve copies exactly the pinned bytes from MinIO; POST /v1/predict through the frontend's nginx (the control
    service, then Ray Serve) answers a real Kvasir-SEG frame with a mask from that version. Argo CD's own sync of a
    commit is tests/cluster/test_gitops_live.py's part (on simulated pods)."""
    status, body = _api(state_dir, f"{api}/models/{version}", token)
    assert status == 200, body
    digest = json.loads(body)["tags"]["onnx_sha256"]
    _, work = snapshot_repository(state_dir.parent / "gitops")
    polyp_gitops = str(Path(sys.executable).parent / "polyp-gitops")
    pin = [polyp_gitops, "pin-model", "--env", "dev", "--version", version, "--sha256", digest]
    pinned = subprocess.run(pin, cwd=work, capture_output=True, text=True, timeout=60)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert git("log", "-1", "--format=%s", cwd=work).startswith(f"model: serve model version {version} (sha256 {digest[:12]}")
    objects = _dev_objects("inference", work)
    [service] = [o for o in objects if o["kind"] == "RayService"]
    assert f'"sha256":"{digest}"' in json.dumps(yaml.safe_load(service["spec"]["serveConfigV2"]), separators=(",", ":"))
    _apply(kubectl, objects, NAMESPACE)

    frame = sorted((samples / "images").iterdir())[0]
    began, answers = time.monotonic(), []

    def predicted():
        answers.append(_api(state_dir, f"{api}/predict?outputs=mask", token, upload=frame))
        return answers[-1][0] == 200 and json.loads(answers[-1][1])

    try:
        prediction = _wait(predicted, 600, "a prediction from Ray Serve through nginx")
    except AssertionError:
        rayservice = json.loads(kubectl("get", "rayservice", "-n", NAMESPACE, "inference", "-o", "json").stdout)
        pods = kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=inference", "-o", "wide").stdout
        raise AssertionError(f"last answers {answers[-3:]}\n{json.dumps(rayservice.get('status'))[:3000]}\n{pods}") from None
    print(f"first prediction from Ray Serve {time.monotonic() - began:.0f} s after the pinned RayService was applied")
    with Image.open(frame) as image:
        size = image.size
    assert prediction["version"] == version and (prediction["width"], prediction["height"]) == size, prediction
    with Image.open(io.BytesIO(base64.b64decode(prediction["mask_png_base64"]))) as mask:
        assert mask.size == size and set(mask.get_flattened_data()) <= {0, 255}

    def inference_pods_ready():  # the first answer may come before the worker's own readiness probe has passed
        pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=inference", "-o", "json").stdout)
        return all(is_ready(pod) for pod in pods["items"]) and pods["items"]

    for pod in _wait(inference_pods_ready, 180, "every inference pod Ready"):
        assert pod["spec"]["nodeName"] == NODE, pod["metadata"]["name"]
        for status in pod["status"]["containerStatuses"]:
            print(f"  {pod['metadata']['name']}/{status['name']}: real, {status['imageID']}, restarts {status['restartCount']}")


def test_the_loop_a_run_triggered_through_the_api_trains_on_real_ray_pods_is_pinned_and_served(
    cluster, frontend, minio, control_service
):
    """Under the platform's NetworkPolicies: the Kvasir-SEG fixture frames pushed to MinIO with `polyp-train dataset
    push`; a run triggered with the write token through the frontend's nginx; the control service submits it to the
    real head's job API; it trains on the real worker pod, registers in MLflow and publishes its ONNX model to
    MinIO; the freshness alert resolves over the SSE stream, read through nginx with the read token; the version is
    pinned and served by Ray Serve, and a real frame gets its mask through nginx (_serve_the_pinned_version)."""
    _, _, kubectl, state_dir = cluster
    _, tokens = control_service
    policies = _platform_policies()
    kubectl("apply", "-f", "-", stdin=json.dumps(policies))
    minio_url = _service_url(kubectl, "minio", "minio")
    s3_env = {
        **os.environ,
        "AWS_ENDPOINT_URL": minio_url,
        "AWS_ACCESS_KEY_ID": "dataset-publisher",  # an operator's keys: write access to the datasets bucket only
        "AWS_SECRET_ACCESS_KEY": minio["dataset-publisher"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "POLYP_HOME": str(state_dir.parent / "push"),
    }
    samples = polyp_fixtures.path("samples/kvasir-seg")
    polyp_train = str(Path(sys.executable).parent / "polyp-train")
    push = [polyp_train, "dataset", "push", f"kvasir={samples}", "s3://datasets/kvasir-seg"]  # dev's TRAINING_DATA
    pushed = subprocess.run(_in_node_args(state_dir, *push), env=s3_env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    fingerprint = json.loads(pushed.stdout.splitlines()[-1])["fingerprint"]

    api = f"{_frontend_url(kubectl, frontend)}/v1"
    alerts_log = state_dir.parent / "alerts.sse"
    with open(alerts_log, "w") as sink:
        listen = ["curl", "-sN", "-m", "1500", "-H", f"Authorization: Bearer {tokens['read']}", f"{api}/alerts/stream"]
        stream = subprocess.Popen(_in_node_args(state_dir, *listen), stdout=sink, stderr=subprocess.DEVNULL)
    try:
        status, body = _api(state_dir, f"{api}/runs", tokens["write"], LOOP_RUN)
        assert status == 201, body
        run = json.loads(body)
        began, workers_seen = time.monotonic(), set()
        while run["status"] in ("queued", "submitting", "pending", "running") and time.monotonic() - began < 1200:
            time.sleep(5)
            workers = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", "ray.io/node-type=worker", "-o", "json").stdout)
            workers_seen |= {p["status"].get("podIP") for p in workers["items"] if p["spec"].get("nodeName") == NODE}
            run = json.loads(_api(state_dir, f"{api}/runs/{run['id']}", tokens["read"])[1])
        print(f"\nloop run {run['id']}: {run['status']} after {time.monotonic() - began:.0f} s")
        _, logs = _api(state_dir, f"{api}/runs/{run['id']}/logs", tokens["read"])
        assert run["status"] == "succeeded", f"{run}\n{logs[-4000:]}"
        # Trained by Ray Train's worker on the real worker pod (Ray prefixes its lines with the node's address).
        assert any(f"ip={ip}" in logs for ip in workers_seen - {None}), (workers_seen, logs[-3000:])
        result = run["result"]
        assert result["champion"] and result["version"] == "1", result
        assert result["dataset_fingerprint"] == fingerprint, "trained on exactly what was pushed"
        # MLflow (the real server, on PostgreSQL) has the version the control service now serves from.
        status, body = _api(state_dir, f"{api}/models/latest", tokens["read"])
        assert status == 200, body
        latest = json.loads(body)
        assert latest["version"] in (result["version"], result.get("int8_version")), (latest, result)
        assert latest["dataset_fingerprint"] == fingerprint
        # The ONNX model is in the model repository the chart names, the real MinIO.
        listing = (
            "import boto3; s3 = boto3.client('s3'); "
            "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket='models', Prefix='triton/')['Contents']))"
        )
        as_serving = {**s3_env, "AWS_ACCESS_KEY_ID": "serving", "AWS_SECRET_ACCESS_KEY": minio["serving"]}
        keys = subprocess.run(
            _in_node_args(state_dir, sys.executable, "-c", listing), env=as_serving, capture_output=True, text=True, timeout=60
        )
        assert "triton/polyp-segmenter/1/model.onnx" in keys.stdout.split(), keys.stdout + keys.stderr[-2000:]

        def resolved():
            return any((e["type"], e["state"]) == ("model_stale", "resolved") for e in _sse_events(alerts_log))

        _wait(resolved, 90, "the freshness alert resolved over SSE")

        _serve_the_pinned_version(kubectl, state_dir, api, tokens["read"], result["version"], samples)
    finally:
        stream.terminate()
        stream.wait(timeout=10)
        kubectl("delete", "-f", "-", stdin=json.dumps(policies))
    kinds = [(e["type"], e["state"]) for e in _sse_events(alerts_log)]
    print(f"alerts over SSE during the loop: {kinds}")
