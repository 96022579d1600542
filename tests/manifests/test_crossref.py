"""Cross-reference checks over each rendered environment: clean as rendered, and each fails on a seeded mistake."""

from __future__ import annotations

import copy

import pytest

from polyp_control.metrics import Metrics
from polyp_gitops import crossref
from polyp_gitops.repo import ENVIRONMENTS

OWN_METRICS = crossref.exported_series(Metrics().registry)


def _object(env, app, kind, name=None):
    return next(o for o in env.apps[app].objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


@pytest.fixture
def dev(rendered):
    """A copy of the rendered dev environment to seed mistakes into."""
    return copy.deepcopy(rendered["dev"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_is_consistent(rendered, repo_root, env):
    assert crossref.environment_problems(rendered[env], repo_root) == []
    assert crossref.rules_use_exported_metrics(rendered[env], OWN_METRICS) == []


def test_an_object_in_a_namespace_the_project_does_not_permit(dev):
    """The defect found: cert-manager's leader-election Role went to kube-system."""
    _object(dev, "cert-manager", "Role")["metadata"]["namespace"] = "kube-system"
    [problem] = crossref.namespaces_permitted(dev)
    assert "goes to namespace kube-system, which the project does not permit" in problem


def test_a_cluster_role_binding_no_chart_renders(dev):
    """What a commit could add to grant itself the cluster: the project names each ClusterRoleBinding."""
    binding = copy.deepcopy(_object(dev, "kuberay-operator", "ClusterRoleBinding"))
    binding["metadata"]["name"] = "ci-bot-admin"
    binding["roleRef"]["name"] = "cluster-admin"
    dev.apps["control-service"].objects.append(binding)
    assert crossref.namespaces_permitted(dev) == [
        "control-service: cluster-scoped ClusterRoleBinding ci-bot-admin is not in the project's clusterResourceWhitelist"
    ]


def test_an_application_inside_an_application(dev):
    """An app-of-apps inside a child would escape the platform project's review of kinds."""
    child = copy.deepcopy(dev.apps["control-service"].application)
    del child["metadata"]["namespace"]  # in the chart's namespace: argocd itself is no destination
    dev.apps["control-service"].objects.append(child)
    assert crossref.namespaces_permitted(dev) == [
        "control-service: Application (argoproj.io) is not in the project's namespaceResourceWhitelist"
    ]


def test_a_cluster_kind_outside_the_whitelist(dev):
    project = next(o for o in dev.bootstrap if o["kind"] == "AppProject")
    project["spec"]["clusterResourceWhitelist"] = [{"group": "apiextensions.k8s.io", "kind": "CustomResourceDefinition"}]
    problems = crossref.namespaces_permitted(dev)
    assert any("cluster-scoped ClusterRole" in p for p in problems)


@pytest.mark.parametrize(
    "seed, expected",
    [
        (
            lambda env: _object(env, "mlflow", "Deployment")["spec"]["template"]["spec"]["containers"][0]["envFrom"].append(
                {"secretRef": {"name": "mlflow-flask-typo"}}
            ),
            "names Secret polyp/mlflow-flask-typo, which nothing creates",
        ),
        (
            lambda env: _object(env, "control-service", "Deployment")["spec"]["template"]["spec"].update(
                serviceAccountName="nobody"
            ),
            "names ServiceAccount polyp/nobody",
        ),
        (
            lambda env: _object(env, "control-service", "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "MLFLOW_TRACKING_URI", "value": "http://mlfow.polyp.svc.cluster.local:5000"}
            ),
            "names Service polyp/mlfow, which nothing creates",
        ),
        (  # The defect the real node found: the mlflow chart's Service listens on 80 unless told 5000.
            lambda env: _object(env, "mlflow", "Service")["spec"]["ports"][0].update(port=80),
            "names port 5000 of Service polyp/mlflow, which listens on [80]",
        ),
    ],
    ids=["secret", "service-account", "service-host", "service-port"],
)
def test_a_name_nothing_provides(dev, repo_root, seed, expected):
    seed(dev)
    assert any(expected in p for p in crossref.references_exist(dev, repo_root)), crossref.references_exist(dev, repo_root)


def test_what_bootstrap_and_operators_create_counts_as_provided(dev, repo_root):
    provided = crossref.provided_objects(dev, repo_root)
    assert provided[("Secret", "polyp", "mlflow-flask")] == "bootstrap/install.sh"
    assert provided[("Secret", "polyp", "platform-db-app")].startswith("CloudNativePG")
    assert provided[("Service", "polyp", "platform-db-rw")].startswith("CloudNativePG")


def test_a_custom_resource_before_its_crd(dev):
    dev.apps["control-service"].application["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] = "-3"
    problems = crossref.crds_before_users(dev)
    assert any("ServiceMonitor control-service needs a CRD installed only at wave -2" in p for p in problems)


def test_a_custom_resource_without_any_crd(dev):
    dev.apps["training"].objects.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert any("Widget w (example.com) has no CRD" in p for p in crossref.crds_before_users(dev))


def test_a_service_monitor_on_a_port_the_service_lacks(dev):
    _object(dev, "control-service", "ServiceMonitor")["spec"]["endpoints"][0]["port"] = "metrics"
    [problem] = crossref.service_monitors_select_services(dev)
    assert "scrapes port 'metrics'" in problem


def test_a_service_monitor_that_selects_nothing(dev):
    _object(dev, "control-service", "ServiceMonitor")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "x"
    [problem] = crossref.service_monitors_select_services(dev)
    assert "selects no Service" in problem


def test_an_alert_on_a_metric_nothing_exports(dev):
    rule = _object(dev, "control-service", "PrometheusRule")["spec"]["groups"][0]["rules"][0]
    rule["expr"] = 'increase(polyp_training_runz_total{status="failed"}[1h]) > 0  # typo'
    [problem] = crossref.rules_use_exported_metrics(dev, OWN_METRICS)
    assert "reads polyp_training_runz_total, which no target exports" in problem


@pytest.mark.parametrize(
    "expr, names",
    [
        (
            'sum(rate(node_cpu_seconds_total{mode!="idle"}[5m])) WITHOUT (cpu, mode) / ON (instance) GROUP_LEFT() count(up)',
            {"node_cpu_seconds_total", "up"},
        ),
        ("time() - polyp_model_last_registered_timestamp_seconds > 36 * 3600", {"polyp_model_last_registered_timestamp_seconds"}),
        (
            "cluster:node_cpu:sum_rate5m / count(sum(node_cpu_seconds_total) BY (instance, cpu))",
            {"cluster:node_cpu:sum_rate5m", "node_cpu_seconds_total"},
        ),
    ],
)
def test_metric_names_are_read_from_promql(expr, names):
    assert crossref.metric_names(expr) == names


def test_a_floating_image(dev):
    _object(dev, "frontend", "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    assert crossref.unpinned_images(dev) == ["image nginx:latest is not pinned to a tag or digest"]


def test_images_lists_upstream_and_our_images(rendered):
    images = crossref.images(rendered["prod"])
    assert "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z" in images
    assert "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1" in images  # an operator's image flag
    assert any(image.startswith("ghcr.io/polyp-mlops/control-service:") for image in images)


def test_a_values_key_the_upstream_chart_does_not_know(dev):
    values = dev.apps["minio"].application["spec"]["source"]["helm"]["valuesObject"]
    values["replica"] = 2  # replicas
    values["persistence"]["sise"] = "1Gi"  # size
    values["resources"]["limits"]["anything"] = "1"  # passed through to Kubernetes: not the chart's to judge
    assert sorted(crossref.unknown_upstream_values(dev)) == [
        "minio: values key persistence.sise is not a value of minio 5.4.0",
        "minio: values key replica is not a value of minio 5.4.0",
    ]


def test_subchart_values_count_as_known(dev):
    values = dev.apps["kube-prometheus-stack"].application["spec"]["source"]["helm"]["valuesObject"]
    assert values["grafana"]["sidecar"]["resources"]  # grafana's own values.yaml, a subchart
    values["grafana"]["sidecar"]["dashboard"] = {}  # dashboards
    assert crossref.unknown_upstream_values(dev) == [
        "kube-prometheus-stack: values key grafana.sidecar.dashboard is not a value of kube-prometheus-stack 88.5.3"
    ]
