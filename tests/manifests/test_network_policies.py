"""charts/network-policies: its table of calls names the pods the platform really renders.

The policies select pods by labels, so a label renamed in a chart would deny that pod everything, silently. The
enforcement itself is shown on the local cluster's real node (tests/cluster/test_real_node.py).
"""

from __future__ import annotations

import pytest
import yaml

from polyp_gitops.render import helm_template
from polyp_gitops.tools import ToolError

# Pods that operators create from a custom resource, with the labels they add (CloudNativePG, KServe, KubeRay,
# the Prometheus Operator): the resource's pod labels as the operator writes them.
OPERATOR_POD_LABELS = {
    "Cluster": lambda o: [{"cnpg.io/cluster": o["metadata"]["name"]}],
    "InferenceService": lambda o: [{"serving.kserve.io/inferenceservice": o["metadata"]["name"]}],
    "Prometheus": lambda o: [{"app.kubernetes.io/name": "prometheus"}],
    "RayCluster": lambda o: [
        {**o["spec"]["headGroupSpec"]["template"]["metadata"].get("labels", {}), "ray.io/node-type": "head"},
        *[
            {**g["template"]["metadata"].get("labels", {}), "ray.io/node-type": "worker"}
            for g in o["spec"].get("workerGroupSpecs", [])
        ],
    ],
}
OPERATOR_POD_LABELS["RayService"] = lambda o: OPERATOR_POD_LABELS["RayCluster"]({"spec": o["spec"]["rayClusterConfig"]})


def _pod_labels(rendered_env) -> list[tuple[str, dict]]:
    """(namespace, labels) of every pod an environment's objects would make."""
    found = []
    for app in rendered_env.apps.values():
        default_namespace = app.application["spec"]["destination"]["namespace"]
        for o in app.objects:
            namespace = o["metadata"].get("namespace", default_namespace)
            template = (o.get("spec") or {}).get("template")
            if o["kind"] == "CronJob":
                template = o["spec"]["jobTemplate"]["spec"]["template"]
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob") and template:
                found.append((namespace, template["metadata"].get("labels", {})))
            for labels in OPERATOR_POD_LABELS.get(o["kind"], lambda _: [])(o):
                found.append((namespace, labels))
    return found


def _defaults(repo_root) -> dict:
    return yaml.safe_load((repo_root / "charts" / "network-policies" / "values.yaml").read_text())


def test_every_pod_the_policies_name_is_rendered_with_those_labels(rendered, repo_root):
    pods = {env: _pod_labels(r) for env, r in rendered.items()}
    # The serving backend no environment picks today renders its pods too.
    rayserve = helm_template(repo_root / "charts" / "inference", "inference", "polyp", values={"backend": "rayserve"})
    pods["inference backend rayserve"] = [
        ("polyp", labels) for o in rayserve for labels in OPERATOR_POD_LABELS.get(o["kind"], lambda _: [])(o)
    ]
    values = _defaults(repo_root)
    for name, pod in values["pods"].items():
        namespace = pod.get("namespace", "polyp")
        matching = [
            env
            for env, found in pods.items()
            if any(ns == namespace and pod["labels"].items() <= labels.items() for ns, labels in found)
        ]
        assert matching, f"network-policies: pod {name} ({namespace}, {pod['labels']}) matches no pod any environment renders"


def test_a_call_to_an_unknown_pod_fails_the_render(repo_root):
    chart = repo_root / "charts" / "network-policies"
    with pytest.raises(ToolError, match=r"no pod named .redis-typo"):
        helm_template(chart, "network-policies", "polyp", values={"calls": [{"from": "control-service", "to": "redis-typo"}]})


def test_each_call_is_an_egress_rule_of_the_caller_and_an_ingress_rule_of_the_callee(repo_root):
    chart = repo_root / "charts" / "network-policies"
    values = {
        "namespaces": ["polyp"],
        # Helm merges maps with the chart's defaults: null leaves a default pod out.
        "pods": {
            **dict.fromkeys(_defaults(repo_root)["pods"]),
            "api": {"labels": {"app": "api"}},
            "db": {"labels": {"app": "db"}},
            "ops": {"namespace": "ops", "labels": {"app": "ops"}},
        },
        "calls": [
            {"from": "api", "to": "db", "ports": [5432]},
            {"from": "ops", "to": "api", "ports": [8000]},
            {"from": "api", "to": "kubernetes-api"},
        ],
    }
    policies = {o["metadata"]["name"]: o["spec"] for o in helm_template(chart, "network-policies", "polyp", values=values)}
    assert set(policies) == {"default-deny", "allow-dns", "allow-api", "allow-db"}, "ops is only a peer: not in namespaces"
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def peer(namespace: str, app: str) -> dict:
        return {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "podSelector": {"matchLabels": {"app": app}},
        }

    assert policies["allow-db"]["ingress"] == [{"from": [peer("polyp", "api")], "ports": [{"protocol": "TCP", "port": 5432}]}]
    assert policies["allow-db"]["egress"] == []
    assert policies["allow-api"]["ingress"] == [{"from": [peer("ops", "ops")], "ports": [{"protocol": "TCP", "port": 8000}]}]
    assert policies["allow-api"]["egress"] == [
        {"to": [peer("polyp", "db")], "ports": [{"protocol": "TCP", "port": 5432}]},
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        },
    ]
