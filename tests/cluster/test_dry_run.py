"""Staging and prod, rendered as Argo CD would, pass a server-side dry run on an empty local cluster
(their CRDs and namespaces applied for real first, as Argo CD's waves would have)."""

from __future__ import annotations

import json

import pytest

from polyp_dev.cluster.control_plane import api_resources
from polyp_gitops import render

from .conftest import REPO, TOOLS_BIN, local_cluster, run_kubectl

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory):
    if not (TOOLS_BIN / "kube-apiserver").is_file():
        pytest.fail("the local cluster's binaries are missing: `make cluster-binaries` builds them (make test does)")
    with local_cluster(tmp_path_factory.mktemp("dry-run") / "cluster") as (env, exports):
        yield lambda *args, stdin=None: run_kubectl(exports["KUBECONFIG"], env, *args, stdin=stdin).stdout


def _namespaced_kinds(kubectl) -> set[tuple[str, str]]:
    """(group, kind) of every namespaced resource the server knows."""
    listing = kubectl("api-resources", "--no-headers", "-o", "wide")
    return {(api_version.rpartition("/")[0], kind) for api_version, kind, namespaced in api_resources(listing) if namespaced}


def _list(objects: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_environment_passes_a_server_side_dry_run(kubectl, env: str):
    rendered = render.render_environment(env, REPO)
    namespaces, apps = set(), []
    for app in rendered.apps.values():
        destination = app.application["spec"]["destination"]["namespace"]
        namespaces.add(destination)
        apps.append((destination, app.objects))
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=_list(
            [o for _, objs in apps for o in objs if o["kind"] == "CustomResourceDefinition"]
            + [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted(namespaces | {"argocd"})]
        ),
    )
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    # Argo CD's own CRDs, which the bootstrap objects (AppProject, root Application) need.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / ".tools" / "share" / "argocd" / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    namespaced = _namespaced_kinds(kubectl)
    objects = list(rendered.bootstrap)
    for destination, objs in apps:
        for obj in objs:
            if obj["kind"] == "CustomResourceDefinition":
                continue
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            if (group, obj["kind"]) in namespaced:  # Argo CD puts these in the destination namespace
                obj.setdefault("metadata", {}).setdefault("namespace", destination)
            objects.append(obj)
    out = kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-", stdin=_list(objects))
    passed = [line for line in out.splitlines() if line.endswith("(server dry run)")]
    print(f"{env}: {len(rendered.apps)} Applications, {len(objects)} objects passed a server-side dry run")
    assert len(passed) == len(objects)
