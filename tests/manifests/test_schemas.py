"""Values schemas, chart READMEs and NOTES: documented, strict, in step with their one source each.

- Every property of every values schema (our charts, the app-of-apps catalog, the root chart) says what it does.
- The image definition lives once, in charts/polyp-lib/image.schema.json; Helm cannot $ref it from another
  chart (shown below), so the charts carry verbatim copies that this file keeps equal to it.
- apps/ and bootstrap/root/ refuse unknown keys and wrong types, and every environment still renders.
- charts/*/README.md is exactly what the pinned helm-docs generates from values.yaml (`make chart-docs`).
- Each deployable chart's NOTES.txt names objects the chart renders (or that their operators create from them).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from polyp_gitops.render import helm_template, render_applications, render_bootstrap
from polyp_gitops.repo import ENVIRONMENTS, INSTALL_ROOT, own_charts
from polyp_gitops.tools import ToolError, run

from ..conftest import REPO_ROOT, TEST_REPO_URL

OWN_CHARTS = own_charts(INSTALL_ROOT)
SCHEMAS = [
    *(f"charts/{chart}/values.schema.json" for chart in OWN_CHARTS),
    "charts/polyp-lib/image.schema.json",
    "apps/values.schema.json",
    "bootstrap/root/values.schema.json",
]
CANONICAL_IMAGE = "charts/polyp-lib/image.schema.json"
DOCUMENT_ONLY = ("$schema", "$comment")  # the canonical file's own keywords, not part of the definition


def _load(rel: str) -> dict:
    return json.loads((REPO_ROOT / rel).read_text())


def _subschemas(node, path="#"):
    """(path, schema) of every named subschema: each entry of properties and definitions, at any depth."""
    if isinstance(node, dict):
        for keyword in ("properties", "definitions"):
            for name, child in (node.get(keyword) or {}).items():
                yield f"{path}/{keyword}/{name}", child
        for keyword, child in node.items():
            if keyword in ("properties", "definitions"):
                for name, grandchild in child.items():
                    yield from _subschemas(grandchild, f"{path}/{keyword}/{name}")
            elif isinstance(child, dict | list):
                yield from _subschemas(child, f"{path}/{keyword}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _subschemas(child, f"{path}/{i}")


@pytest.mark.parametrize("rel", SCHEMAS)
def test_every_schema_property_says_what_it_does(rel):
    schema = _load(rel)
    named = list(_subschemas(schema))
    assert len(named) >= 3, f"{rel}: no properties found"
    undocumented = [path for path, sub in named if not str(sub.get("description", "")).strip()]
    assert not undocumented, f"{rel}: properties without a description: {undocumented}"


# ---- one image definition --------------------------------------------------------------------------


def _canonical_image() -> dict:
    return {k: v for k, v in _load(CANONICAL_IMAGE).items() if k not in DOCUMENT_ONLY}


def _looks_like_our_image(node: dict) -> bool:
    """An image map of our own images: repository, tag and pullPolicy (Triton's and Ray Serve's differ on purpose)."""
    return {"repository", "tag", "pullPolicy"} <= set(node.get("properties") or {})


def _image_copy_problems(schema: dict, canonical: dict) -> list[str]:
    problems = []
    for path, sub in _subschemas(schema):
        if _looks_like_our_image(sub) and path != "#/definitions/image":
            problems.append(f"{path} defines an image inline: use {{'$ref': '#/definitions/image'}}")
    copied = (schema.get("definitions") or {}).get("image")
    if copied is not None and copied != canonical:
        problems.append(f"definitions.image differs from {CANONICAL_IMAGE}")
    image = (schema.get("properties") or {}).get("image")
    if copied is not None and (image or {}).get("$ref") != "#/definitions/image":
        problems.append("properties.image does not $ref #/definitions/image")
    return problems


def _charts_with_an_image_of_ours() -> set[str]:
    found = set()
    for chart in OWN_CHARTS:
        values = yaml.safe_load((REPO_ROOT / "charts" / chart / "values.yaml").read_text())
        if isinstance(values.get("image"), dict) and "pullPolicy" in values["image"]:
            found.add(chart)
    return found


def test_our_image_has_one_definition_and_each_chart_carries_it_verbatim():
    canonical = _canonical_image()
    carriers = {c for c in OWN_CHARTS if "image" in (_load(f"charts/{c}/values.schema.json").get("definitions") or {})}
    assert carriers == _charts_with_an_image_of_ours() == {"control-service", "frontend", "training"}
    for chart in OWN_CHARTS:
        assert _image_copy_problems(_load(f"charts/{chart}/values.schema.json"), canonical) == [], chart


def test_the_copy_check_catches_a_drifted_or_inlined_image():
    canonical = _canonical_image()
    drifted = _load("charts/frontend/values.schema.json")
    drifted["definitions"]["image"]["properties"]["tag"]["pattern"] = ".*"
    assert _image_copy_problems(drifted, canonical) == [f"definitions.image differs from {CANONICAL_IMAGE}"]
    inlined = _load("charts/training/values.schema.json")
    inlined["properties"]["image"] = copy.deepcopy(canonical)
    assert any("defines an image inline" in p for p in _image_copy_problems(inlined, canonical))


def test_helm_does_not_resolve_a_schema_ref_outside_the_chart(tmp_path):
    """Why the charts carry copies: Helm 3.19 compiles values.schema.json as file:///values.schema.json, so a
    relative $ref resolves against the filesystem root, not the chart. If Helm ever resolves it, this fails:
    then the copies can become {"$ref": "../polyp-lib/image.schema.json"} (for renders from a checkout only;
    `helm package` would still leave the file behind)."""
    chart = tmp_path / "charts" / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("image: {repository: r, tag: '1'}\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {image: {{ .Values.image.tag | quote }}}\n"
    )
    shutil.copy(REPO_ROOT / CANONICAL_IMAGE, tmp_path / "charts" / "image.schema.json")
    (chart / "values.schema.json").write_text(
        json.dumps({"type": "object", "properties": {"image": {"$ref": "../image.schema.json"}}})
    )
    with pytest.raises(ToolError, match=r'failing loading "file:///image\.schema\.json"'):
        helm_template(chart, "probe", "default")


@pytest.mark.parametrize(
    "chart, values, complaint",
    [
        ("training", {"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),  # the copy is what validates
        ("frontend", {"image": {"digest": "sha256:00"}}, "digest"),
        ("control-service", {"service": {"prot": 80}}, "prot"),
        ("control-service", {"metrics": {"serviceMonitors": True}}, "serviceMonitors"),
        ("control-service", {"dashboard": {"enable": False}}, "enable"),
        ("database", {"databases": []}, "databases"),
    ],
)
def test_chart_schemas_refuse_unknown_keys_and_wrong_values(repo_root, chart, values, complaint):
    with pytest.raises(ToolError) as failure:
        helm_template(repo_root / "charts" / chart, chart, "polyp", values=values)
    assert complaint in str(failure.value)


# ---- apps/ (the component catalog) and bootstrap/root/ ---------------------------------------------


def _apps(repo_root: Path, env: str, values: dict | None = None) -> list[dict]:
    """apps/ as the root Application renders it: the environments list and the environment's file, then its
    Helm parameters."""
    return helm_template(
        repo_root / "apps",
        f"polyp-{env}",
        "argocd",
        [repo_root / "environments" / "promotion.yaml", repo_root / "environments" / env / "values.yaml"],
        values,
        [
            {"name": "repoURL", "value": TEST_REPO_URL},
            {"name": "targetRevision", "value": "v1.2.3"},
            {"name": "environment", "value": env},
        ],
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_renders_under_the_schemas(repo_root, env):
    """The path Argo CD takes: bootstrap/root (its schema) renders the root app, whose source renders apps/."""
    catalog = yaml.safe_load((repo_root / "apps" / "values.yaml").read_text())["components"]
    for mirror in ("", "registry.example.com/charts"):
        applications = render_applications(env, repo_root, chart_mirror=mirror)
        assert {a["metadata"]["name"] for a in applications} == {n for n, c in catalog.items() if c["enabled"]}
    assert {o["kind"] for o in render_bootstrap(env, repo_root, TEST_REPO_URL, "v1.2.3")} == {"AppProject", "Application"}


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"components": {"minio": {"enabeld": False}}}, "'enabeld' not allowed"),  # a typo of a component key
        ({"components": {"mino": {"values": {"replicas": 2}}}}, "/components/mino"),  # a typo of a component name
        ({"components": {"minio": {"wave": "early"}}}, "/components/minio/wave"),
        ({"components": {"frontend": {"enabled": "yes"}}}, "/components/frontend/enabled"),
        ({"components": {"frontend": {"chart": {"repoURL": "https://x", "name": "f", "version": "1.0.0"}}}}, "oneOf"),
        ({"components": {"redis": {"chart": {"version": "^0.11"}}}}, "/components/redis/chart/version"),
        ({"components": {"redis": {"chart": {"ref": "main"}}}}, "'ref' not allowed"),
        ({"components": {"redis": {"namespace": "Polyp"}}}, "/components/redis/namespace"),
        ({"components": {"redis": {"values": ["not", "a", "map"]}}}, "/components/redis/values"),
        ({"components": {"kserve": {"ignoreDifferences": [{"kind": "X", "jqPathExpression": "."}]}}}, "jqPathExpression"),
        ({"components": {"Redis_2": {"enabled": False}}}, "Redis_2"),
        ({"sync": {"automatic": True}}, "'automatic' not allowed"),
        ({"sync": {"retry": {"limit": "5"}}}, "/sync/retry/limit"),
        ({"cascadeDelete": "true"}, "/cascadeDelete"),
        ({"chartMirror": "oci://registry.example.com/charts"}, "/chartMirror"),
        ({"argocdNamespaces": "argocd"}, "'argocdNamespaces' not allowed"),
    ],
)
def test_apps_schema_refuses_a_seeded_wrong_key_or_type(repo_root, values, complaint):
    _apps(repo_root, "dev")  # the same render without the seed passes
    with pytest.raises(ToolError) as failure:
        _apps(repo_root, "dev", values)
    assert "don't meet the specifications of the schema" in str(failure.value)
    assert complaint in str(failure.value)


def test_upstream_values_stay_free_form(repo_root):
    """values is handed to the component's chart: the catalog schema does not know its keys."""
    seeded = {"components": {"minio": {"values": {"anything": {"at": ["all"]}}}}}
    [minio] = [a for a in _apps(repo_root, "prod", seeded) if a["metadata"]["name"] == "minio"]
    assert minio["spec"]["source"]["helm"]["valuesObject"]["anything"] == {"at": ["all"]}


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"namespace": ["polyp"]}, "'namespace' not allowed"),  # a typo of namespaces
        ({"namespaces": "polyp"}, "/namespaces"),
        ({"namespaces": ["Polyp"]}, "/namespaces/0"),
        ({"chartRepositories": []}, "/chartRepositories"),
        ({"project": 7}, "/project"),
    ],
)
def test_root_schema_refuses_a_seeded_wrong_key_or_type(repo_root, values, complaint):
    parameters = [
        {"name": "environment", "value": "dev"},
        {"name": "repoURL", "value": TEST_REPO_URL},
        {"name": "targetRevision", "value": "main"},
    ]
    listed = [repo_root / "environments" / "promotion.yaml"]
    helm_template(repo_root / "bootstrap" / "root", "polyp-dev", "argocd", listed, parameters=parameters)
    with pytest.raises(ToolError) as failure:
        helm_template(repo_root / "bootstrap" / "root", "polyp-dev", "argocd", listed, values=values, parameters=parameters)
    assert "don't meet the specifications of the schema" in str(failure.value)
    assert complaint in str(failure.value)


# ---- chart READMEs (helm-docs) -----------------------------------------------------------------------


def _makefile_helm_docs_flags(repo_root: Path) -> list[str]:
    makefile = (repo_root / "Makefile").read_text()
    [flags] = re.findall(r"^HELM_DOCS_FLAGS := (.*)$", makefile, re.MULTILINE)
    assert re.search(r"^\thelm-docs --chart-search-root \$\(CURDIR\)/charts \$\(HELM_DOCS_FLAGS\)$", makefile, re.MULTILINE)
    return flags.split()


def test_chart_readmes_are_what_helm_docs_generates(repo_root, tmp_path):
    """`make chart-docs` on a copy of charts/ changes nothing, and leaves no value without a description."""
    charts = tmp_path / "charts"
    shutil.copytree(repo_root / "charts", charts, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    run(["helm-docs", "--chart-search-root", str(charts), *_makefile_helm_docs_flags(repo_root)])
    chart_dirs = sorted(p.parent.name for p in (repo_root / "charts").glob("*/Chart.yaml"))
    assert set(OWN_CHARTS) | {"polyp-lib"} <= set(chart_dirs)
    for chart in chart_dirs:
        committed, generated = repo_root / "charts" / chart / "README.md", charts / chart / "README.md"
        assert generated.is_file(), f"helm-docs generated no README for {chart}"
        rows = [line for line in generated.read_text().splitlines() if re.match(r"^\| [^-| ][^|]* \| \w+ \|", line)]
        if chart in OWN_CHARTS:
            assert rows, f"{chart}: no values table"
        undocumented = [row.split("|")[1].strip() for row in rows if not row.rstrip().rstrip("|").split("|")[-1].strip()]
        assert not undocumented, f"charts/{chart}/values.yaml: values without a `# --` description: {undocumented}"
        assert committed.is_file(), f"charts/{chart}/README.md is missing: run `make chart-docs`"
        assert committed.read_text() == generated.read_text(), f"charts/{chart}/README.md is stale: run `make chart-docs`"


# ---- NOTES.txt ---------------------------------------------------------------------------------------

RESOURCE_KINDS = {
    "deployment": "Deployment",
    "service": "Service",
    "raycluster": "RayCluster",
    "rayservice": "RayService",
    "inferenceservice": "InferenceService",
    "servingruntime": "ServingRuntime",
    "prometheusrule": "PrometheusRule",
    "servicemonitor": "ServiceMonitor",
    "cluster.postgresql.cnpg.io": "Cluster",
}
# Services the operators create from what the chart renders (KubeRay, KServe Standard mode, CloudNativePG).
OPERATOR_SERVICES = {"RayCluster": ["-head-svc"], "RayService": ["-head-svc", "-serve-svc"],
                     "InferenceService": ["-predictor"], "Cluster": ["-rw", "-ro", "-r"]}  # fmt: skip


def _notes(repo_root: Path, tmp_path: Path, chart: str, namespace: str, values: dict | None) -> tuple[str, list[dict]]:
    """NOTES.txt rendered with the release's values (helm template skips it): a copy of the chart renders it
    through tpl into a ConfigMap beside the chart's own objects."""
    charts = tmp_path / "charts"
    shutil.copytree(repo_root / "charts", charts, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    copy_dir = charts / chart
    shutil.copy(copy_dir / "templates" / "NOTES.txt", copy_dir / "notes.txt")
    (copy_dir / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: zz-notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    )
    objects = helm_template(copy_dir, chart, namespace, values=values)
    [notes] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "zz-notes"]
    return notes["data"]["notes"], [o for o in objects if o is not notes]


@pytest.mark.parametrize(
    "chart, values",
    [
        ("control-service", None),
        ("control-service", {"metrics": {"serviceMonitor": False}, "nameOverride": "api"}),
        ("frontend", None),
        ("inference", None),
        ("inference", {"backend": "rayserve", "model": {"version": "7", "sha256": "ab" * 32}}),
        ("inference", {"model": {"version": "", "requireSha256": True}}),
        ("training", {"workers": {"gpu": 1}}),
        ("database", {"clusterName": "pg", "databases": [{"name": "only", "owner": "app"}]}),
        ("database", {"databases": [{"name": "a", "owner": "a"}, {"name": "b", "owner": "b"}]}),
    ],
)
def test_notes_say_how_to_reach_what_the_release_installed(repo_root, tmp_path, chart, values):
    namespace = "ml-platform"
    notes, objects = _notes(repo_root, tmp_path, chart, namespace, values)
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}
    services = {name for kind, name in rendered if kind == "Service"}
    for kind, name in rendered:
        services |= {name + suffix for suffix in OPERATOR_SERVICES.get(kind, [])}
    commands = [line.strip() for line in notes.splitlines() if line.strip().startswith("kubectl")]
    assert any(" get " in c or "rollout status" in c for c in commands), notes
    assert any("port-forward" in c for c in commands), notes
    for command in commands:
        assert command.startswith(f"kubectl -n {namespace} "), command
        for token in command.split():
            if not (reference := re.fullmatch(r"([a-z.]+)/([a-z0-9][a-z0-9-]*)", token)):
                continue  # a flag, a label selector (key=value), a URL
            resource, name = reference.groups()
            kind = RESOURCE_KINDS[resource]
            known = services if kind == "Service" else {n for k, n in rendered if k == kind}
            assert name in known, f"{chart}: `{command}` names {kind} {name}; rendered: {sorted(rendered)}"
    assert "{{" not in notes and "<no value>" not in notes, notes
