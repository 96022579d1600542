"""kwok writes an operator's status only while that operator does not run for real on the real node."""

from __future__ import annotations

from polyp_dev.cluster import images, kwok_operators
from polyp_gitops.render import DEFAULT_REPO_URL, render_application, render_applications

from .conftest import REPO


def _names(stages: list[dict]) -> set[str]:
    return {s["metadata"]["name"] for s in stages}


def _images_dev_renders_for(component: str) -> set[str]:
    """Every container image of every pod template (Deployments and Jobs) dev renders for a component."""
    app = next(a for a in render_applications("dev", REPO) if a["metadata"]["name"] == component)
    objects = render_application(app, DEFAULT_REPO_URL, REPO).objects
    templates = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    return {c["image"] for t in templates for c in t.get("containers", []) + t.get("initContainers", [])}


def test_the_cloudnative_pg_stages_are_left_out_exactly_while_its_real_operator_image_is_loaded():
    every = kwok_operators.simulated_stages(set())
    with_real_operator = kwok_operators.simulated_stages({images.CNPG_OPERATOR.ref, images.COREDNS.ref})
    assert _names(every) - _names(with_real_operator) == {"cnpg-cluster-healthy", "cnpg-database-applied"}
    # The other operators (cert-manager, KServe, KubeRay, the Prometheus Operator) stay simulated.
    assert {"cnpg-cluster-healthy"} < _names(every) and len(with_real_operator) == len(every) - 2


def test_the_raycluster_stage_is_left_out_exactly_while_kuberays_real_operator_image_is_loaded():
    every = kwok_operators.simulated_stages(set())
    with_kuberay = kwok_operators.simulated_stages({images.KUBERAY_OPERATOR.ref})
    assert _names(every) - _names(with_kuberay) == {"kuberay-raycluster-ready"}


def test_every_real_operator_annotation_names_an_image_built_here_that_the_chart_runs():
    annotated = {
        s["metadata"]["annotations"][kwok_operators.REAL_OPERATOR_IMAGE]
        for s in kwok_operators.simulated_stages(set())
        if kwok_operators.REAL_OPERATOR_IMAGE in s["metadata"].get("annotations", {})
    }
    assert annotated == {image.ref for image in images.BINARY_IMAGES}
    # A chart bump that moves the operator's tag must move the image built here (and so the annotation) with it.
    assert images.CNPG_OPERATOR.ref in _images_dev_renders_for("cloudnative-pg")
    assert images.KUBERAY_OPERATOR.ref in _images_dev_renders_for("kuberay-operator")


def _go_mod(module: str) -> str:
    return (REPO / "dev" / "local-cluster" / "go" / module / "go.mod").read_text()


def test_the_operator_image_is_built_from_the_module_version_its_tag_names():
    tag = images.CNPG_OPERATOR.ref.rsplit(":", 1)[1]
    assert f"github.com/cloudnative-pg/cloudnative-pg v{tag}\n" in _go_mod("cnpg")


def test_kuberays_operator_image_says_which_version_is_inside():
    # v1.7.0's source is not served here; the image under the chart's tag holds v1.6.2 and its label says so.
    assert "github.com/ray-project/kuberay/ray-operator v1.6.2\n" in _go_mod("kuberay")
    assert "v1.6.2" in images.KUBERAY_OPERATOR.contents


def test_minios_images_are_built_from_the_commits_their_release_tags_name():
    # MinIO's release tags are not semver; the module proxy serves each release's commit as a pseudo-version
    # whose timestamp is the tag's (RELEASE.2025-09-07T16-13-09Z: 20250907161309).
    refs = {image.ref for image in images.UPSTREAM_IMAGES}
    for module, repository in (("minio", "quay.io/minio/minio"), ("mc", "quay.io/minio/mc")):
        ref = next(r for r in refs if r.startswith(repository + ":"))
        stamp = "".join(ch for ch in ref.rsplit(":", 1)[1] if ch.isdigit())
        assert f"github.com/minio/{module} v0.0.0-{stamp}-" in _go_mod(module)
        assert ref in _images_dev_renders_for("minio")
