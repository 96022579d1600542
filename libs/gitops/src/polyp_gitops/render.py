"""Render an environment the way Argo CD would, from the local checkout.

bootstrap/root renders the AppProject and the root Application; the root Application's Helm
source (apps/ with the environment's values file and parameters) renders the child
Applications; each child whose source lives in this repository is rendered with its own Helm
settings (valueFiles relative to the chart, ``$ref/`` value files of multi-source apps,
values/valuesObject, parameters, releaseName, destination namespace). Children that pull an
upstream chart cannot be rendered offline: their Application objects are still validated.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ChartsUnavailable  # raised here, and importable from here
from .repo import ENVIRONMENTS, PROMOTION_FILE, check_environment
from .schemas import DEFAULT_KUBE_VERSION
from .tools import run

DEFAULT_REPO_URL = "https://github.com/polyp-mlops/polyp-platform.git"


@dataclass
class RenderedApp:
    application: dict
    objects: list[dict] = field(default_factory=list)
    upstream_chart: str | None = None  # "repo/chart@version" when not renderable offline


@dataclass
class RenderedEnvironment:
    env: str
    bootstrap: list[dict]
    apps: dict[str, RenderedApp]

    def all_objects(self) -> list[dict]:
        objects = list(self.bootstrap)
        for app in self.apps.values():
            objects.append(app.application)
            objects.extend(app.objects)
        return objects


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` as the string "=": YAML 1.1 makes it the `value` tag, which PyYAML
    cannot construct, and kube-prometheus-stack's CRDs have one in an enum."""


def _construct_value(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


_ManifestLoader.add_constructor("tag:yaml.org,2002:value", _construct_value)


def parse_documents(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=_ManifestLoader) if doc]


def charts_dir() -> Path:
    """Where the packaged upstream charts are: POLYP_CHARTS_DIR, a folder of `helm pull`ed archives
    (`polyp-gitops charts` lists them; `make validate` points it at the pinned, checked fixtures)."""
    configured = os.environ.get("POLYP_CHARTS_DIR")
    if not configured:
        raise ChartsUnavailable(
            "set POLYP_CHARTS_DIR to a folder of the packaged upstream charts (`polyp-gitops charts` "
            "lists them; `make validate` provides the pinned ones)"
        )
    return Path(configured)


def chart_archive(chart: str, version: str) -> Path:
    """The packaged upstream chart Argo CD would pull: <chart>-<version>.tgz in charts_dir()."""
    archive = charts_dir() / f"{chart}-{version}.tgz"
    if not archive.is_file():
        raise ValueError(
            f"upstream chart {chart} {version} is not at {archive}: set POLYP_CHARTS_DIR to a folder "
            f"of packaged charts (helm pull {chart} --version {version})"
        )
    return archive


_archive_renders: dict[str, list[dict]] = {}


def helm_template(
    chart: Path,
    release: str,
    namespace: str,
    value_files: Sequence[Path] = (),
    values: dict | None = None,
    parameters: Sequence[dict] = (),
    kube_version: str = DEFAULT_KUBE_VERSION,
) -> list[dict]:
    """`helm template` as Argo CD calls it: value files, then inline values, then --set parameters.

    A packaged chart with the same inputs renders the same objects: environments share those renders.
    """
    if chart.suffix == ".tgz" and not value_files:
        key = json.dumps([str(chart), release, namespace, values, list(parameters), kube_version], sort_keys=True)
        if key not in _archive_renders:
            _archive_renders[key] = _helm_template(chart, release, namespace, (), values, parameters, kube_version)
        return copy.deepcopy(_archive_renders[key])
    return _helm_template(chart, release, namespace, value_files, values, parameters, kube_version)


def _helm_template(
    chart: Path,
    release: str,
    namespace: str,
    value_files: Sequence[Path],
    values: dict | None,
    parameters: Sequence[dict],
    kube_version: str,
) -> list[dict]:
    if (chart / "Chart.yaml").is_file() and "dependencies:" in (chart / "Chart.yaml").read_text():
        run(["helm", "dependency", "build", str(chart)])
    args = ["helm", "template", release, str(chart), "--namespace", namespace, "--kube-version", kube_version, "--include-crds"]
    for path in value_files:
        args += ["--values", str(path)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as inline:
        if values:
            yaml.safe_dump(values, inline)
            inline.flush()
            args += ["--values", inline.name]
        for param in parameters:
            flag = "--set-string" if param.get("forceString") else "--set"
            args += [flag, f"{param['name']}={param['value']}"]
        return parse_documents(run(args))


def render_bootstrap(
    env: str, root: Path, repo_url: str = DEFAULT_REPO_URL, revision: str = "main", chart_mirror: str = ""
) -> list[dict]:
    """The AppProject and root Application that bootstrap/install.sh applies."""
    check_environment(env)
    return helm_template(
        root / "bootstrap" / "root",
        f"polyp-{env}",
        "argocd",
        value_files=[root / PROMOTION_FILE],
        parameters=[  # install.sh passes them with --set-string
            {"name": "environment", "value": env, "forceString": True},
            {"name": "repoURL", "value": repo_url, "forceString": True},
            {"name": "targetRevision", "value": revision, "forceString": True},
            {"name": "chartMirror", "value": chart_mirror, "forceString": True},
        ],
    )


def _sources(spec: dict) -> list[dict]:
    return spec.get("sources") or [spec["source"]]


def render_application(app: dict, repo_url: str, repo_root: Path) -> RenderedApp:
    """Render one Application's sources that live in this repository."""
    spec = app["spec"]
    sources = _sources(spec)
    refs = {s["ref"]: repo_root for s in sources if s.get("ref") and s["repoURL"] == repo_url}
    rendered = RenderedApp(application=app)
    for source in sources:
        if source.get("ref") and not source.get("path") and not source.get("chart"):
            continue  # a values-only source
        helm = source.get("helm", {})
        if source.get("chart"):
            rendered.upstream_chart = f"{source['repoURL']}/{source['chart']}@{source['targetRevision']}"
            rendered.objects += helm_template(
                chart_archive(source["chart"], source["targetRevision"]),
                helm.get("releaseName") or app["metadata"]["name"],
                spec["destination"]["namespace"],
                values=_inline_values(helm),
                parameters=helm.get("parameters", []),
            )
            continue
        if source["repoURL"] != repo_url:
            raise ValueError(
                f"Application {app['metadata']['name']}: source {source['repoURL']} is neither this repo nor a chart"
            )
        chart_dir = repo_root / source["path"]
        value_files = []
        for name in helm.get("valueFiles", []):
            if name.startswith("$"):
                ref, _, rest = name[1:].partition("/")
                if ref not in refs:
                    raise ValueError(f"Application {app['metadata']['name']}: value file {name} names unknown ref ${ref}")
                value_files.append(refs[ref] / rest)
            else:
                value_files.append((chart_dir / name).resolve())
        for path in value_files:
            if not path.is_file() and not helm.get("ignoreMissingValueFiles"):
                raise ValueError(f"Application {app['metadata']['name']}: value file {path} does not exist")
        rendered.objects += helm_template(
            chart_dir,
            helm.get("releaseName") or app["metadata"]["name"],
            spec["destination"]["namespace"],
            [p for p in value_files if p.is_file()],
            _inline_values(helm),
            helm.get("parameters", []),
        )
    return rendered


def _inline_values(helm: dict) -> dict | None:
    return helm.get("valuesObject") or (yaml.safe_load(helm["values"]) if helm.get("values") else None)


ARGOCD_NAMESPACE = "argocd"
HEALTH_CHECK_KEY = "resource.customizations.health.argoproj.io_Application"


def argocd_chart(root: Path) -> tuple[str, str]:
    """(repository, version) of the argo-cd chart bootstrap/install.sh pins."""
    install = (root / "bootstrap" / "install.sh").read_text()
    found = []
    for name in ("ARGOCD_CHART_REPO", "ARGOCD_CHART_VERSION"):
        match = re.search(rf"^{name}=(\S+)", install, re.MULTILINE)
        if match is None:
            raise ValueError(f"bootstrap/install.sh sets no {name}")
        found.append(match.group(1))
    repo, version = found
    return repo, version


def upstream_charts(root: Path) -> set[tuple[str, str, str]]:
    """(chart, version, repository) of every upstream chart of every environment, and Argo CD's:
    what a chart mirror must hold."""
    repo, version = argocd_chart(root)
    charts = {("argo-cd", version, repo)}
    for env in ENVIRONMENTS:
        for application in render_applications(env, root):
            source = application["spec"]["source"]
            if "chart" in source:
                charts.add((source["chart"], source["targetRevision"], source["repoURL"]))
    return charts


def render_argocd(root: Path) -> list[dict]:
    """The argo-cd chart as bootstrap/install.sh installs it: its pinned version, values and health check."""
    _, version = argocd_chart(root)
    values = yaml.safe_load((root / "bootstrap" / "argocd-values.yaml").read_text())
    values.setdefault("configs", {}).setdefault("cm", {})[HEALTH_CHECK_KEY] = (
        root / "bootstrap" / "application-health.lua"
    ).read_text()
    return helm_template(chart_archive("argo-cd", version), "argocd", ARGOCD_NAMESPACE, values=values)


def render_applications(env: str, root: Path, chart_mirror: str = "") -> list[dict]:
    """The child Application objects of an environment, without rendering what they deploy."""
    bootstrap = render_bootstrap(env, root, DEFAULT_REPO_URL, "main", chart_mirror)
    return render_application(next(o for o in bootstrap if o["kind"] == "Application"), DEFAULT_REPO_URL, root).objects


def render_environment(
    env: str, root: Path, repo_url: str = DEFAULT_REPO_URL, revision: str = "main", chart_mirror: str = ""
) -> RenderedEnvironment:
    """Every object of one environment of the repository at `root`, rendered as Argo CD would."""
    bootstrap = render_bootstrap(env, root, repo_url, revision, chart_mirror)
    root_app = next(o for o in bootstrap if o["kind"] == "Application")
    children = render_application(root_app, repo_url, root).objects
    apps = {}
    for child in children:
        if child.get("kind") != "Application":
            raise ValueError(f"root app rendered a {child.get('kind')}; apps/ must render Applications only")
        apps[child["metadata"]["name"]] = render_application(child, repo_url, root)
    return RenderedEnvironment(env=env, bootstrap=bootstrap, apps=apps)
