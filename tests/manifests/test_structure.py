"""Structural rules every environment must keep: pins, image tags, pod security, projects, waves."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from polyp_gitops.crossref import pod_specs
from polyp_gitops.pins import FLOATING_TAGS
from polyp_gitops.repo import ENVIRONMENTS

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")


def _apps(rendered, env):
    return rendered[env].apps


def _images(node, path=""):
    """Every (path, repository, tag) under keys named image/*Image in a values tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.lower().endswith("image") and isinstance(value, dict) and "repository" in value:
                yield f"{path}.{key}", value["repository"], str(value.get("tag", ""))
            else:
                yield from _images(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _images(value, f"{path}[{i}]")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_upstream_chart_is_an_exact_pin(rendered, env):
    for name, app in _apps(rendered, env).items():
        source = app.application["spec"]["source"]
        if "chart" in source:
            assert EXACT_VERSION.match(source["targetRevision"]), f"{name}: {source['targetRevision']} is not exact"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_floating_image_tag_rendered_or_configured(rendered, env):
    for obj in rendered[env].all_objects():
        for where, pod in pod_specs(obj):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                if obj["kind"] == "InferenceService":
                    continue  # the model container takes its image from the ServingRuntime
                image = container["image"]
                assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], f"{obj['kind']} {where}: {image} has no tag"
                assert image.rsplit(":", 1)[-1] not in FLOATING_TAGS, f"{obj['kind']} {where}: {image} floats"
    for name, app in _apps(rendered, env).items():
        values = app.application["spec"]["source"].get("helm", {}).get("valuesObject", {})
        for path, repository, tag in _images(values):
            assert tag and tag not in FLOATING_TAGS, f"{name}{path}: {repository} has floating tag {tag!r}"


def test_charts_refuse_the_same_floating_tags_as_the_gitops_tool(repo_root):
    """One rule in two languages: the Helm helper's list is the Python one."""
    helpers = (repo_root / "charts" / "polyp-lib" / "templates" / "_helpers.tpl").read_text()
    [listed] = re.findall(r"has \$tag \(list ([^)]*)\)", helpers)
    assert set(re.findall(r'"([^"]+)"', listed)) == FLOATING_TAGS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_container_has_resources_and_never_runs_as_root(rendered, env):
    checked = 0
    for obj in rendered[env].all_objects():
        for where, pod in pod_specs(obj):
            pod_non_root = pod.get("securityContext", {}).get("runAsNonRoot") is True
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                label = f"{obj['kind']}/{obj['metadata']['name']} {where} {container.get('name', '')}"
                resources = container.get("resources", {})
                for section in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{label}: {section} missing"
                non_root = container.get("securityContext", {}).get("runAsNonRoot", pod_non_root)
                assert non_root is True, f"{label}: may run as root"
                checked += 1
    assert checked >= 6


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_upstream_workloads_are_given_resource_limits(rendered, env):
    exempt = {"kserve-crd"}  # CRDs only: no workload
    for name, app in _apps(rendered, env).items():
        if app.upstream_chart and name not in exempt:
            assert "limits" in yaml.safe_dump(app.application["spec"]["source"]["helm"]["valuesObject"]), name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_application_is_in_the_platform_project(rendered, env):
    applications = [o for o in rendered[env].all_objects() if o["kind"] == "Application"]
    assert len(applications) == len(_apps(rendered, env)) + 1
    root = next(o for o in rendered[env].bootstrap if o["kind"] == "Application")
    assert root["spec"]["project"] == "polyp-platform-root"  # it alone may place Applications in argocd
    assert {a["spec"]["project"] for a in applications if a is not root} == {"polyp-platform"}
    project = next(o for o in rendered[env].bootstrap if o["kind"] == "AppProject")
    assert project["metadata"]["name"] == "polyp-platform"
    allowed = set(project["spec"]["sourceRepos"])
    destinations = {d["namespace"] for d in project["spec"]["destinations"]}
    for app in (a for a in applications if a is not root):
        assert app["spec"]["source"]["repoURL"] in allowed, app["metadata"]["name"]
        assert app["spec"]["destination"]["namespace"] in destinations, app["metadata"]["name"]


def test_sync_policy_is_automated_in_dev_and_manual_in_prod(rendered):
    for env, automated in (("dev", True), ("staging", True), ("prod", False)):
        for name, app in _apps(rendered, env).items():
            policy = app.application["spec"]["syncPolicy"]
            assert policy["retry"]["limit"] > 0 and policy["retry"]["backoff"]["factor"] > 1
            assert "CreateNamespace=true" in policy["syncOptions"]
            if automated:
                assert policy["automated"] == {"prune": True, "selfHeal": True}, (env, name)
            else:
                assert "automated" not in policy, (env, name)


@pytest.mark.parametrize(
    "user, provider",
    [
        ("kserve", "kserve-crd"),
        ("kserve", "cert-manager"),
        ("inference", "kserve"),
        ("training", "kuberay-operator"),
        ("database", "cloudnative-pg"),
        ("mlflow", "database"),
        ("mlflow", "minio"),
        ("control-service", "kube-prometheus-stack"),
        ("control-service", "redis"),
    ],
)
def test_sync_waves_put_providers_before_their_users(rendered, user, provider):
    def wave(name):
        return int(_apps(rendered, "dev")[name].application["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    assert wave(provider) < wave(user)


@pytest.mark.parametrize("name", ["kube-prometheus-stack", "kuberay-operator", "kserve-crd", "cloudnative-pg"])
def test_charts_with_large_crds_use_server_side_apply(rendered, name):
    assert "ServerSideApply=true" in _apps(rendered, "dev")[name].application["spec"]["syncPolicy"]["syncOptions"]


CREDENTIAL_KEY = re.compile(r"(?i)(password|secretkey|secret|token)$")
CONFIG_ONLY_SECRET_KEYS = {"alertmanager.yaml"}
# mlflow 1.11.5 renders a random Flask key as a hook Secret on every render (no option to turn it off);
# its server takes the key from our mlflow-flask Secret instead (extraSecretNamesForEnvFrom in apps/values.yaml).
RANDOM_HOOK_SECRETS = {"mlflow-flask-server-secret-key"}
CREDENTIAL_FIELD = re.compile(r"(?im)^\s*[\w.-]*(password|secret|token|api_key|apikey)[\w.-]*\s*:")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_secret_material_is_rendered_from_git(rendered, env):
    """Secrets come from the cluster (bootstrap, CloudNativePG, cert-manager); git only names them.

    Rendered Secrets are either empty shells another controller fills (KServe's webhook certificate,
    written by cert-manager) or configuration the operator insists on reading from a Secret
    (Alertmanager's alertmanager.yaml): none holds a credential.
    """
    for name, app in _apps(rendered, env).items():
        for secret in (o for o in app.objects if o["kind"] == "Secret"):
            if secret["metadata"]["name"] in RANDOM_HOOK_SECRETS:
                assert "helm.sh/hook" in secret["metadata"].get("annotations", {}), secret["metadata"]["name"]
                continue
            content = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            content.update(secret.get("stringData") or {})
            assert set(content) <= CONFIG_ONLY_SECRET_KEYS, f"{name}: Secret {secret['metadata']['name']} holds {sorted(content)}"
            for text in content.values():
                assert not CREDENTIAL_FIELD.search(text), f"{name}: Secret {secret['metadata']['name']} holds a credential"
        values = app.application["spec"]["source"].get("helm", {}).get("valuesObject", {})
        for path, value in _leaves(values):
            key = str(path[-1]) if path else ""
            if CREDENTIAL_KEY.search(key) and "existing" not in key.lower():
                assert value in ("", None) or isinstance(value, dict), f"{name}: {'.'.join(map(str, path))} holds a literal"


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, node


def _lookup(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_files_state_only_what_differs(repo_root: Path, env):
    """An environment value equal to the default it overrides is noise (the promoted pins excepted)."""
    base = yaml.safe_load((repo_root / "apps" / "values.yaml").read_text())
    overrides = yaml.safe_load((repo_root / "environments" / env / "values.yaml").read_text())
    for path, value in _leaves(overrides):
        if path[-2:] in {("image", "tag"), ("model", "version")}:
            continue  # written per environment by CI and promotion
        default = _lookup(base, path)
        if default is KeyError and path[0] == "components" and base["components"][path[1]].get("path"):
            chart_values = yaml.safe_load((repo_root / base["components"][path[1]]["path"] / "values.yaml").read_text())
            default = _lookup(chart_values, path[3:])
        assert default != value, f"{env}: {'.'.join(path)} repeats the default {value!r}"
