"""render_application follows Argo CD's Helm source semantics on a small chart made here."""

from __future__ import annotations

import pytest
import yaml

from polyp_gitops.render import render_application
from polyp_gitops.tools import run

REPO = "https://git.example.com/platform.git"


@pytest.fixture
def repo(tmp_path):
    chart = tmp_path / "charts" / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\nsize: small\nreplicas: 1\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n  size: {{ .Values.size | quote }}\n"
        "  replicas: {{ .Values.replicas | quote }}\n"
    )
    (chart / "values-big.yaml").write_text("size: big\n")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "dev.yaml").write_text("greeting: hi from dev\n")
    return tmp_path


def _app(source=None, sources=None, name="demo-app"):
    spec = {"project": "p", "destination": {"server": "https://kubernetes.default.svc", "namespace": "team"}}
    if sources:
        spec["sources"] = sources
    else:
        spec["source"] = source
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name}, "spec": spec}


def _data(rendered):
    [cm] = rendered.objects
    return cm["metadata"], cm["data"]


def test_precedence_is_value_files_then_inline_values_then_parameters(repo):
    source = {
        "repoURL": REPO,
        "path": "charts/demo",
        "targetRevision": "main",
        "helm": {
            "valueFiles": ["values-big.yaml"],
            "valuesObject": {"greeting": "inline", "replicas": 2},
            "parameters": [{"name": "replicas", "value": "3"}],
        },
    }
    meta, data = _data(render_application(_app(source), REPO, repo))
    assert data == {"greeting": "inline", "size": "big", "replicas": "3"}
    assert meta == {"name": "demo-app", "namespace": "team"}  # release name defaults to the app name


def test_values_string_and_release_name(repo):
    source = {
        "repoURL": REPO,
        "path": "charts/demo",
        "helm": {"values": yaml.safe_dump({"size": "medium"}), "releaseName": "custom"},
    }
    meta, data = _data(render_application(_app(source), REPO, repo))
    assert meta["name"] == "custom" and data["size"] == "medium"


def test_multi_source_ref_value_files(repo):
    sources = [
        {"repoURL": REPO, "path": "charts/demo", "helm": {"valueFiles": ["$values/environments/dev.yaml"]}},
        {"repoURL": REPO, "targetRevision": "main", "ref": "values"},
    ]
    _, data = _data(render_application(_app(sources=sources), REPO, repo))
    assert data["greeting"] == "hi from dev"


def test_missing_value_file_is_an_error_unless_ignored(repo):
    source = {"repoURL": REPO, "path": "charts/demo", "helm": {"valueFiles": ["nope.yaml"]}}
    with pytest.raises(ValueError, match=r"nope.yaml does not exist"):
        render_application(_app(source), REPO, repo)
    source["helm"]["ignoreMissingValueFiles"] = True
    _, data = _data(render_application(_app(source), REPO, repo))
    assert data["size"] == "small"


def test_unknown_ref_is_an_error(repo):
    sources = [{"repoURL": REPO, "path": "charts/demo", "helm": {"valueFiles": ["$cfg/x.yaml"]}}]
    with pytest.raises(ValueError, match=r"unknown ref \$cfg"):
        render_application(_app(sources=sources), REPO, repo)


def test_upstream_chart_renders_from_the_packaged_archive_with_inline_values(repo, tmp_path_factory, monkeypatch):
    charts = tmp_path_factory.mktemp("charts")
    run(["helm", "package", str(repo / "charts" / "demo"), "--version", "1.2.3", "--destination", str(charts)])
    monkeypatch.setenv("POLYP_CHARTS_DIR", str(charts))
    source = {
        "repoURL": "https://charts.example.com",
        "chart": "demo",
        "targetRevision": "1.2.3",
        "helm": {"releaseName": "thing", "valuesObject": {"size": "huge"}},
    }
    rendered = render_application(_app(source), REPO, repo)
    assert rendered.upstream_chart == "https://charts.example.com/demo@1.2.3"
    meta, data = _data(rendered)
    assert (meta["name"], meta["namespace"], data["size"], data["greeting"]) == ("thing", "team", "huge", "hello")


def test_an_upstream_chart_that_is_not_there_is_an_error_naming_the_pin(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("POLYP_CHARTS_DIR", str(tmp_path))
    source = {"repoURL": "https://charts.example.com", "chart": "thing", "targetRevision": "1.2.3"}
    with pytest.raises(ValueError, match=r"upstream chart thing 1\.2\.3 is not at .*POLYP_CHARTS_DIR"):
        render_application(_app(source), REPO, repo)


def test_path_in_another_git_repo_is_refused(repo):
    source = {"repoURL": "https://git.example.com/other.git", "path": "charts/demo"}
    with pytest.raises(ValueError, match="neither this repo nor a chart"):
        render_application(_app(source), REPO, repo)
