"""Cross-reference checks over a rendered environment: what one object names, another must provide.

Each check returns a list of problems (empty when it holds). They read only rendered objects, so
they run offline; what the cluster or an operator creates at run time is declared here, with who.
"""

from __future__ import annotations

import fnmatch
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import yaml

from .pins import FLOATING_TAGS
from .render import RenderedEnvironment, chart_archive

BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "autoscaling",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "coordination.k8s.io",
    "apiregistration.k8s.io",
    "discovery.k8s.io",
    "node.k8s.io",
}
BUILTIN_CLUSTER_KINDS = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "StorageClass",
    "IngressClass",
    "APIService",
    "PersistentVolume",
    "CSIDriver",
    "RuntimeClass",
}
# (kind, namespace, name) of an object; namespace None: cluster-scoped.
ObjectKey = tuple[str, str | None, str]
# Created by Kubernetes or by an operator at run time, never rendered: (kind, namespace, name) -> who.
RUNTIME_OBJECTS: dict[ObjectKey, str] = {
    ("Service", "default", "kubernetes"): "Kubernetes (the API server's Service)",
    ("Service", "kube-system", "kube-prometheus-stack-kubelet"): "the Prometheus operator (--kubelet-service)",
}
# Services an upstream chart's defaults name for a feature this platform does not enable.
UNUSED_UPSTREAM_HOSTS = {
    ("istio-system", "knative-local-gateway"): "KServe's Serverless-mode gateway; Standard mode never calls it",
    ("keda", "keda-otel-scaler"): "KServe's KEDA autoscaler; KEDA is not installed",
}
RUNTIME_SERVICE_LABELS = {  # labels and ports of those Services, for ServiceMonitor selection
    ("default", "kubernetes"): ({"component": "apiserver", "provider": "kubernetes"}, {"https"}),
    ("kube-system", "kube-prometheus-stack-kubelet"): (
        {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"},
        {"https-metrics", "http-metrics", "cadvisor"},
    ),
}
# Metric name prefixes each scrape target of the monitoring stack exports (upstream exporters by prefix).
EXPORTER_PREFIXES = {
    "kube-state-metrics": ("kube_",),
    "node-exporter": ("node_",),
    "kubelet and cAdvisor": (
        "container_",
        "kubelet_",
        "machine_",
        "storage_operation_",
        "volume_manager_",
        "kubernetes_feature_enabled",
        "csi_",
        "prober_",
    ),
    "API server": (
        "apiserver_",
        "workqueue_",
        "etcd_",
        "aggregator_",
        "rest_client_",
        "kubernetes_build_info",
        "process_",
        "go_",
    ),
    "Prometheus": ("prometheus_", "net_conntrack_", "scrape_", "up"),
    "Alertmanager": ("alertmanager_",),
    "config reloaders": ("reloader_",),
    "Grafana": ("grafana_",),
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "double_exponential_smoothing",
}


@dataclass(frozen=True)
class Placed:
    app: str
    wave: int
    namespace: str | None  # None: cluster-scoped
    obj: dict

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def group(self) -> str:
        api = self.obj["apiVersion"]
        return api.split("/")[0] if "/" in api else ""


def placed_objects(env: RenderedEnvironment) -> list[Placed]:
    """Every object an environment's Applications deploy, in the namespace Argo CD puts it."""
    cluster_kinds = set(BUILTIN_CLUSTER_KINDS)
    for app in env.apps.values():
        for obj in app.objects:
            if obj["kind"] == "CustomResourceDefinition" and obj["spec"].get("scope") == "Cluster":
                cluster_kinds.add(obj["spec"]["names"]["kind"])
    placed = []
    for name, app in env.apps.items():
        wave = int(app.application["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", 0))
        destination = app.application["spec"]["destination"]["namespace"]
        for obj in app.objects:
            namespace = None if obj["kind"] in cluster_kinds else obj["metadata"].get("namespace") or destination
            placed.append(Placed(name, wave, namespace, obj))
    return placed


def _project(env: RenderedEnvironment) -> dict:
    """The AppProject the platform's Applications are in (bootstrap renders the root project too)."""
    names = {app.application["spec"]["project"] for app in env.apps.values()}
    return next(o for o in env.bootstrap if o["kind"] == "AppProject" and o["metadata"]["name"] in names)


def _permits(whitelist: list[dict], p: Placed) -> bool:
    """Argo CD's match: group, kind and (where given) name are each a filepath.Match glob."""
    return any(
        fnmatch.fnmatchcase(p.group, w["group"])
        and fnmatch.fnmatchcase(p.kind, w["kind"])
        and fnmatch.fnmatchcase(p.name, w.get("name") or "*")
        for w in whitelist
    )


def namespaces_permitted(env: RenderedEnvironment) -> list[str]:
    """Every object lands in a destination of the AppProject, and its kind (by name, if cluster-scoped) is whitelisted."""
    project = _project(env)["spec"]
    allowed = {d["namespace"] for d in project.get("destinations", [])}
    problems = []
    for p in placed_objects(env):
        if p.namespace is None:
            if not _permits(project.get("clusterResourceWhitelist", []), p):
                problems.append(f"{p.app}: cluster-scoped {p.kind} {p.name} is not in the project's clusterResourceWhitelist")
        elif p.namespace not in allowed and "*" not in allowed:
            problems.append(f"{p.app}: {p.kind} {p.name} goes to namespace {p.namespace}, which the project does not permit")
        elif "namespaceResourceWhitelist" in project and not _permits(project["namespaceResourceWhitelist"], p):  # absent: all
            problems.append(f"{p.app}: {p.kind} ({p.group or 'core'}) is not in the project's namespaceResourceWhitelist")
    return problems


def bootstrap_secret_specs(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> {key: literal or "@random"} of each Secret bootstrap/install.sh generates (its SECRETS)."""
    text = (root / "bootstrap" / "install.sh").read_text()
    block = re.search(r"^SECRETS=\((.*?)^\)", text, re.MULTILINE | re.DOTALL)
    if block is None:
        raise ValueError("bootstrap/install.sh has no SECRETS=( ... ) list")
    specs: dict[tuple[str, str], dict[str, str]] = {}
    for line in re.findall(r'"([^"]+)"', block.group(1)):
        namespace, name, *pairs = line.split()
        specs[(namespace, name)] = dict(pair.split("=", 1) for pair in pairs)
    return specs


def bootstrap_secrets(root: Path) -> dict[ObjectKey, str]:
    """The Secrets bootstrap/install.sh generates into the cluster."""
    return {("Secret", namespace, name): "bootstrap/install.sh" for namespace, name in bootstrap_secret_specs(root)}


def _operator_objects(placed: list[Placed]) -> dict[ObjectKey, str]:
    """What the operators deployed here create from the custom resources rendered."""
    made: dict[ObjectKey, str] = {}
    for p in placed:
        if p.kind == "Cluster" and p.group == "postgresql.cnpg.io":
            made[("Secret", p.namespace, f"{p.name}-app")] = f"CloudNativePG (Cluster {p.name})"
            for suffix in ("rw", "ro", "r"):
                made[("Service", p.namespace, f"{p.name}-{suffix}")] = f"CloudNativePG (Cluster {p.name})"
        elif p.kind == "Certificate" and p.group == "cert-manager.io":
            made[("Secret", p.namespace, p.obj["spec"]["secretName"])] = f"cert-manager (Certificate {p.name})"
        elif p.kind == "RayCluster":
            made[("Service", p.namespace, f"{p.name}-head-svc")] = f"KubeRay (RayCluster {p.name})"
            if (p.obj["spec"].get("authOptions") or {}).get("mode") == "token":  # its auth token, key auth_token
                made[("Secret", p.namespace, p.name)] = f"KubeRay (RayCluster {p.name}, authOptions)"
        elif p.kind == "RayService":  # its cluster's head Service, and the Serve Service once the app is up
            for suffix in ("head-svc", "serve-svc"):
                made[("Service", p.namespace, f"{p.name}-{suffix}")] = f"KubeRay (RayService {p.name})"
        elif p.kind == "InferenceService":
            made[("Service", p.namespace, f"{p.name}-predictor")] = f"KServe (InferenceService {p.name})"
        elif p.kind == "Job":
            for container in p.obj["spec"]["template"]["spec"].get("containers", []):
                for arg in container.get("args", []):
                    if str(arg).startswith("--secret-name="):  # kube-webhook-certgen writes the webhook's TLS Secret
                        made[("Secret", p.namespace, str(arg).split("=", 1)[1])] = f"the certificate Job {p.name}"
        elif p.kind in ("Prometheus", "Alertmanager") and p.group == "monitoring.coreos.com":
            made[("Service", p.namespace, f"{p.kind.lower()}-operated")] = f"the Prometheus operator ({p.kind} {p.name})"
    return made


def provided_objects(env: RenderedEnvironment, root: Path) -> dict[ObjectKey, str]:
    """(kind, namespace, name) of everything that will exist, and who creates it."""
    placed = placed_objects(env)
    provided: dict[ObjectKey, str] = {(p.kind, p.namespace, p.name): f"rendered by {p.app}" for p in placed if p.namespace}
    provided.update(bootstrap_secrets(root))
    provided.update(_operator_objects(placed))
    provided.update(RUNTIME_OBJECTS)
    for namespace in {p.namespace for p in placed if p.namespace}:
        provided[("ServiceAccount", namespace, "default")] = "Kubernetes (every namespace's default ServiceAccount)"
    return provided


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) for every pod an object carries, custom resources included."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        yield kind, spec["template"]["spec"]
    elif kind == "CronJob":
        yield kind, spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind in ("RayCluster", "RayService"):
        cluster = spec["rayClusterConfig"] if kind == "RayService" else spec
        yield "head", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield group["groupName"], group["template"]["spec"]
    elif kind == "ServingRuntime":
        yield kind, spec
    elif kind == "InferenceService":  # the model container; its image comes from the ServingRuntime
        predictor = spec.get("predictor", {})
        yield (
            kind,
            {
                "serviceAccountName": predictor.get("serviceAccountName"),
                "securityContext": predictor.get("securityContext", {}),
                "containers": [predictor.get("model", {})],
            },
        )


def _named_references(pod: dict) -> Iterator[tuple[str, str]]:
    if pod.get("serviceAccountName"):
        yield "ServiceAccount", pod["serviceAccountName"]
    for volume in pod.get("volumes", []):
        if volume.get("secret") and not volume["secret"].get("optional"):
            yield "Secret", volume["secret"]["secretName"]
        if volume.get("configMap") and not volume["configMap"].get("optional"):
            yield "ConfigMap", volume["configMap"]["name"]
        if volume.get("persistentVolumeClaim"):
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if ref.get(key) and not ref[key].get("optional"):
                    yield kind, ref[key]["name"]
        for source in container.get("envFrom", []):
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if source.get(key) and not source[key].get("optional"):
                    yield kind, source[key]["name"]


SERVICE_HOST = re.compile(r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?\b")


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def references_exist(env: RenderedEnvironment, root: Path) -> list[str]:
    """Every Secret, ConfigMap, ServiceAccount and PVC a workload names, and every in-cluster Service
    host a value names (name.namespace.svc), is rendered, made by bootstrap, or made by an operator; a host
    with a port (name.namespace.svc:port) names a port the rendered Service has."""
    provided = provided_objects(env, root)
    placed = placed_objects(env)
    service_ports = {
        (p.namespace, p.name): {port["port"] for port in p.obj["spec"].get("ports", [])} for p in placed if p.kind == "Service"
    }
    problems = []
    for p in placed:
        for _, pod in pod_specs(p.obj):
            for kind, name in _named_references(pod):
                if (kind, p.namespace, name) not in provided:
                    problems.append(f"{p.app}: {p.kind} {p.name} names {kind} {p.namespace}/{name}, which nothing creates")
        for text in _strings(p.obj):
            for match in SERVICE_HOST.finditer(text):
                service = ("Service", match.group(3), match.group(1))
                if service not in provided and service[1:] not in UNUSED_UPSTREAM_HOSTS:
                    problems.append(f"{p.app}: {p.kind} {p.name} names Service {service[1]}/{service[2]}, which nothing creates")
                port = re.match(r":(\d+)\b", text[match.end() :])
                ports = service_ports.get(service[1:])
                if port and ports is not None and int(port.group(1)) not in ports:
                    problems.append(
                        f"{p.app}: {p.kind} {p.name} names port {port.group(1)} of Service {service[1]}/{service[2]}, "
                        f"which listens on {sorted(ports)}"
                    )
    return sorted(set(problems))


def crds_before_users(env: RenderedEnvironment) -> list[str]:
    """A custom resource's CRD is installed by its own Application or one of an earlier sync wave."""
    placed = placed_objects(env)
    crd_wave = {("argoproj.io", "Application"): -100, ("argoproj.io", "AppProject"): -100}  # Argo CD's, at bootstrap
    for p in placed:
        if p.kind == "CustomResourceDefinition":
            key = (p.obj["spec"]["group"], p.obj["spec"]["names"]["kind"])
            crd_wave[key] = min(crd_wave.get(key, p.wave), p.wave)
    problems = []
    for p in placed:
        if p.group in BUILTIN_GROUPS:
            continue
        wave = crd_wave.get((p.group, p.kind))
        if wave is None:
            problems.append(f"{p.app}: {p.kind} {p.name} ({p.group}) has no CRD in any Application")
        elif wave > p.wave:
            problems.append(f"{p.app} (wave {p.wave}): {p.kind} {p.name} needs a CRD installed only at wave {wave}")
    return problems


def service_monitors_select_services(env: RenderedEnvironment) -> list[str]:
    """Every ServiceMonitor selects at least one Service, and each endpoint's port is a port of those Services."""
    placed = placed_objects(env)
    services = [
        (p.namespace, p.obj["metadata"].get("labels") or {}, {port.get("name") for port in p.obj["spec"].get("ports", [])})
        for p in placed
        if p.kind == "Service"
    ]
    services += [(ns, labels, ports) for (ns, _), (labels, ports) in RUNTIME_SERVICE_LABELS.items()]
    problems = []
    for p in (p for p in placed if p.kind == "ServiceMonitor"):
        spec = p.obj["spec"]
        selector = spec.get("namespaceSelector") or {}
        namespaces = None if selector.get("any") else set(selector.get("matchNames") or [p.namespace])
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        matched = [
            s for s in services if (namespaces is None or s[0] in namespaces) and all(s[1].get(k) == v for k, v in wanted.items())
        ]
        if not matched:
            problems.append(f"{p.app}: ServiceMonitor {p.name} selects no Service ({wanted} in {sorted(namespaces or ['*'])})")
            continue
        ports = set().union(*(s[2] for s in matched))
        for endpoint in spec.get("endpoints", []):
            if endpoint.get("port") and endpoint["port"] not in ports:
                problems.append(
                    f"{p.app}: ServiceMonitor {p.name} scrapes port {endpoint['port']!r}, "
                    f"which its Services do not have ({sorted(p for p in ports if p)})"
                )
    return problems


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (functions, keywords, labels and strings removed)."""
    expr = re.sub(r"#[^\n]*", "", expr)  # comments
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr, flags=re.IGNORECASE)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w.])", expr):
        word = match.group(1)
        following = expr[match.end() :].lstrip()[:1]
        if word.lower() in PROMQL_WORDS or following == "(" or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def rules_use_exported_metrics(env: RenderedEnvironment, own_metrics: set[str]) -> list[str]:
    """Every series a PrometheusRule reads is recorded by a rule, exported by our service, or by an exporter."""
    placed = placed_objects(env)
    rules = [
        (p, rule)
        for p in placed
        if p.kind == "PrometheusRule"
        for group in p.obj["spec"].get("groups", [])
        for rule in group.get("rules", [])
    ]
    recorded = {rule["record"] for _, rule in rules if "record" in rule}
    prefixes = tuple(prefix for group in EXPORTER_PREFIXES.values() for prefix in group)
    problems = []
    for p, rule in rules:
        for name in sorted(metric_names(str(rule.get("expr", "")))):
            if name in recorded or name in own_metrics or name.startswith(prefixes) or name in ("ALERTS", "ALERTS_FOR_STATE"):
                continue
            problems.append(
                f"{p.app}: PrometheusRule {p.name} ({rule.get('alert') or rule.get('record')}) reads {name}, "
                "which no target exports"
            )
    return problems


IMAGE_ARG = re.compile(r"^--[\w-]*(image|reloader)[\w-]*=(\S+/\S+)$")


def images(env: RenderedEnvironment) -> set[str]:
    """Every container image the environment runs: pod specs, custom resources, operator image flags."""
    found = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            if isinstance(node.get("repository"), str) and isinstance(node.get("tag"), str) and key.lower().endswith("image"):
                registry = node.get("registry")
                found.add(f"{registry + '/' if registry else ''}{node['repository']}:{node['tag']}")
            for k, value in node.items():
                if k == "image" and isinstance(value, str):
                    found.add(value)
                else:
                    walk(value, k)
        elif isinstance(node, list):
            for value in node:
                if isinstance(value, str) and (match := IMAGE_ARG.match(value)):
                    found.add(match.group(2))
                walk(value, key)

    for p in placed_objects(env):
        walk(p.obj)
    return found


def unpinned_images(env: RenderedEnvironment) -> list[str]:
    problems = []
    for image in sorted(images(env)):
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and (not tag or tag in FLOATING_TAGS):
            problems.append(f"image {image} is not pinned to a tag or digest")
    return problems


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """A member's contents; only a regular file (or a link to one) has any."""
    contents = tar.extractfile(member)
    if contents is None:
        raise ValueError(f"{member.name} in a chart archive is not a regular file")
    return contents


def _chart_values(tar: tarfile.TarFile) -> dict:
    """values.yaml of a chart archive, each subchart's (directory or nested archive) under its name or alias."""
    members = {m.name: m for m in tar.getmembers() if m.isfile()}
    top = next(iter(members)).split("/")[0]
    defaults = yaml.safe_load(_member(tar, members[f"{top}/values.yaml"])) or {}
    chart = yaml.safe_load(_member(tar, members[f"{top}/Chart.yaml"])) or {}
    alias = {d["name"]: d.get("alias") or d["name"] for d in chart.get("dependencies") or []}
    for name, member in members.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "charts" and parts[2].endswith(".tgz"):
            with tarfile.open(fileobj=_member(tar, member)) as sub:
                chart_file = next(m for m in sub.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml"))
                sub_name = yaml.safe_load(_member(sub, chart_file))["name"]
                sub_values = _chart_values(sub)
        elif len(parts) == 4 and parts[1] == "charts" and parts[3] == "values.yaml":
            sub_name, sub_values = parts[2], yaml.safe_load(_member(tar, member)) or {}
        else:
            continue
        key = alias.get(sub_name, sub_name)
        defaults[key] = _merged(sub_values, defaults.get(key) or {})
    return defaults


def _merged(base: dict, override: dict) -> dict:
    """Helm's merge of a parent's values over a subchart's: maps merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def chart_defaults(archive: Path) -> dict:
    """A packaged chart's values.yaml, with each subchart's under its name (what the parent may set)."""
    with tarfile.open(archive) as tar:
        return _chart_values(tar)


# Values passed through to Kubernetes objects as they are (toYaml): any key Kubernetes knows is fine.
PASS_THROUGH = {
    "resources",
    "securityContext",
    "podSecurityContext",
    "containerSecurityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "annotations",
    "labels",
    "podAnnotations",
    "podLabels",
    "extraEnvVars",
    "env",
}


def unknown_values_keys(values: dict, defaults: dict, path: str = "") -> list[str]:
    """Keys of ours that the chart's values.yaml does not have. A map the chart leaves empty ({}) or a
    list is free-form: the chart's templates read whatever is put there."""
    problems = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in defaults:
            problems.append(where)
        elif key in PASS_THROUGH:
            continue
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            problems += unknown_values_keys(value, defaults[key], where)
    return problems


class _MetricFamily(Protocol):
    name: str
    type: str


class MetricsRegistry(Protocol):
    """What exported_series reads of a prometheus_client CollectorRegistry (not a dependency of this package)."""

    def collect(self) -> Iterable[_MetricFamily]: ...


def exported_series(registry: MetricsRegistry) -> set[str]:
    """The series names a prometheus_client registry exports (counters as _total, histograms as _bucket ...)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
    }
    return {family.name + suffix for family in registry.collect() for suffix in suffixes.get(family.type, ("",))}


def unknown_upstream_values(env: RenderedEnvironment) -> list[str]:
    """Values keys of ours that an upstream chart does not know (charts with a values.schema.json refuse
    them when rendering already; this covers the others)."""
    problems = []
    for name, app in env.apps.items():
        source = app.application["spec"]["source"]
        if "chart" in source:
            values = source.get("helm", {}).get("valuesObject") or {}
            for key in unknown_values_keys(values, chart_defaults(chart_archive(source["chart"], source["targetRevision"]))):
                problems.append(f"{name}: values key {key} is not a value of {source['chart']} {source['targetRevision']}")
    return problems


def environment_problems(env: RenderedEnvironment, root: Path) -> list[str]:
    """Every cross-reference check that needs nothing but the rendered environment."""
    return (
        namespaces_permitted(env)
        + references_exist(env, root)
        + crds_before_users(env)
        + service_monitors_select_services(env)
        + unpinned_images(env)
        + unknown_upstream_values(env)
    )
