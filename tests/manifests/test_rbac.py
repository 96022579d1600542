"""Least privilege in the rendered cluster: the AppProjects are the boundary of a commit, and only named
controllers may read Secrets in every namespace."""

from __future__ import annotations

import re

import pytest

from polyp_gitops import rbac
from polyp_gitops.repo import ENVIRONMENTS

# ClusterRoles a ClusterRoleBinding may give the right to read every Secret, and why each needs it.
SECRET_READERS = {
    "cert-manager-cainjector": "cert-manager: copies CA bundles from Certificate Secrets into webhooks",
    "cert-manager-controller-certificates": "cert-manager: writes each Certificate's key pair to a Secret in its namespace",
    "cert-manager-controller-issuers": "cert-manager: reads an Issuer's CA or account key Secret in its namespace",
    "cert-manager-controller-clusterissuers": "cert-manager: reads ClusterIssuer Secrets (in its own namespace)",
    "cert-manager-controller-orders": "cert-manager: ACME account keys",
    "cert-manager-controller-challenges": "cert-manager: ACME solver credentials",
    "cloudnative-pg": "CloudNativePG: creates and rotates each Cluster's app and superuser Secrets",
    "kserve-manager-role": "KServe: reads the storage credentials an InferenceService's ServiceAccount names",
    "kube-prometheus-stack-operator": "Prometheus operator: writes Prometheus' config Secret, reads scrape credentials",
    "kuberay-operator": "KubeRay: creates each RayCluster's auth token Secret",
}


def _project_named(rendered, env, name):
    return next(o for o in rendered[env].bootstrap if o["kind"] == "AppProject" and o["metadata"]["name"] == name)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_named_controllers_read_every_secret(rendered, env):
    readers = rbac.cluster_secret_readers(rendered[env].all_objects())
    assert set(readers) - set(SECRET_READERS) == set(), {r: readers[r] for r in set(readers) - set(SECRET_READERS)}


def test_grafana_reads_dashboards_from_its_own_namespace(rendered):
    """Its sidecar used to search ALL namespaces, through a ClusterRole that read every Secret."""
    objects = rendered["dev"].apps["kube-prometheus-stack"].objects
    grafana = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "kube-prometheus-stack-grafana")
    sidecar = next(c for c in grafana["spec"]["template"]["spec"]["containers"] if c["name"] == "grafana-sc-dashboard")
    assert {e["name"]: e.get("value") for e in sidecar["env"]}["NAMESPACE"] == "monitoring"
    role = next(o for o in objects if o["kind"] == "Role" and "grafana" in o["metadata"]["name"])
    assert role["metadata"]["namespace"] == "monitoring"
    dashboard = next(o for o in rendered["dev"].apps["control-service"].objects if o["metadata"]["name"].endswith("-dashboard"))
    assert dashboard["metadata"]["namespace"] == "monitoring" and dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize(
    "role, expected",
    [
        ({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}, True),
        ({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}, True),
        ({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["one"]}]}, False),
        ({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}, False),
        ({"rules": [{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]}]}, False),
        ({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}}, True),
    ],
    ids=["list-secrets", "wildcard", "named-secret", "write-only", "other-group", "aggregated"],
)
def test_what_counts_as_reading_every_secret(role, expected):
    reader = {"kind": "ClusterRole", "metadata": {"name": "r"}, **role}
    aggregated = {
        "kind": "ClusterRole",
        "metadata": {"name": "part", "labels": {"agg": "yes"}},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["watch"]}],
    }
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "namespace": "polyp", "name": "x"}],
    }
    assert rbac.cluster_secret_readers([reader, aggregated, binding]) == ({"r": ["ServiceAccount polyp/x"]} if expected else {})
    role_binding_only = {**binding, "kind": "RoleBinding"}  # bound in one namespace: not every Secret
    assert rbac.cluster_secret_readers([reader, aggregated, role_binding_only]) == {}


def test_roles_merged_by_expression_or_into_kubernetes_own_roles_count():
    secrets = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    part = {"kind": "ClusterRole", "metadata": {"name": "part", "labels": {"tier": "ops"}}, "rules": secrets}
    selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["ops"]}]}
    merged = {"kind": "ClusterRole", "metadata": {"name": "merged"}, "aggregationRule": {"clusterRoleSelectors": [selector]}}
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "merged"},
        "subjects": [{"kind": "User", "name": "ops"}],
    }
    assert rbac.cluster_secret_readers([part, merged, binding]) == {"merged": ["User ops"]}
    into_edit = {**part, "metadata": {"name": "chart-edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}}
    assert rbac.cluster_secret_readers([into_edit]) == {"chart-edit": ["aggregated into edit"]}


def test_a_binding_to_cluster_admin_counts():
    binding = {
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "everyone"}],
    }
    assert rbac.cluster_secret_readers([binding]) == {"cluster-admin": ["Group everyone"]}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_platform_project_lists_what_it_permits(rendered, env):
    spec = _project_named(rendered, env, "polyp-platform")["spec"]
    assert "argocd" not in {d["namespace"] for d in spec["destinations"]}
    assert "*" not in {d["namespace"] for d in spec["destinations"]}
    globbed = re.compile(r"[*?\[]")  # Argo CD matches group and kind as globs too
    for item in spec["clusterResourceWhitelist"]:
        assert not globbed.search(item["group"] + item["kind"]) and item.get("name") not in (None, "", "*"), item
    for item in spec["namespaceResourceWhitelist"]:
        assert not globbed.search(item["group"] + item["kind"]) and item["group"] != "argoproj.io", item
    rbac_kinds = {(i["kind"], i["name"]) for i in spec["clusterResourceWhitelist"] if i["group"] == "rbac.authorization.k8s.io"}
    assert ("ClusterRoleBinding", "kube-prometheus-stack-grafana-clusterrolebinding") not in rbac_kinds


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_root_project_places_only_applications_in_argocd(rendered, env):
    root_app = next(o for o in rendered[env].bootstrap if o["kind"] == "Application")
    spec = _project_named(rendered, env, root_app["spec"]["project"])["spec"]
    assert [d["namespace"] for d in spec["destinations"]] == ["argocd"]
    assert spec["clusterResourceWhitelist"] == []
    assert spec["namespaceResourceWhitelist"] == [{"group": "argoproj.io", "kind": "Application"}]
    assert spec["sourceRepos"] == [root_app["spec"]["source"]["repoURL"]]
    children = {a.application["spec"]["project"] for a in rendered[env].apps.values()}
    assert children == {"polyp-platform"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_argo_cds_default_project_permits_nothing(rendered, env):
    """An Application naming `default` would otherwise bypass both projects."""
    spec = _project_named(rendered, env, "default")["spec"]
    everything = [{"group": "*", "kind": "*"}]
    assert spec == {
        "sourceRepos": [],
        "destinations": [],
        "clusterResourceWhitelist": [],
        "namespaceResourceWhitelist": [],
        "clusterResourceBlacklist": everything,
        "namespaceResourceBlacklist": everything,
    }
