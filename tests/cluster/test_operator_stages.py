"""kwok writes an operator's status only while that operator does not run for real on the real node."""

from __future__ import annotations

from polyp_dev.cluster import images, kwok_operators
from polyp_gitops.render import DEFAULT_REPO_URL, render_application, render_applications

from .conftest import REPO


def _names(stages: list[dict]) -> set[str]:
    return {s["metadata"]["name"] for s in stages}


def _operator_images_dev_renders(component: str) -> set[str]:
    app = next(a for a in render_applications("dev", REPO) if a["metadata"]["name"] == component)
    objects = render_application(app, DEFAULT_REPO_URL, REPO).objects
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    return {c["image"] for d in deployments for c in d["spec"]["template"]["spec"]["containers"]}


def test_the_cloudnative_pg_stages_are_left_out_exactly_while_its_real_operator_image_is_loaded():
    every = kwok_operators.simulated_stages(set())
    with_real_operator = kwok_operators.simulated_stages({images.CNPG_OPERATOR.ref, images.COREDNS.ref})
    assert _names(every) - _names(with_real_operator) == {"cnpg-cluster-healthy", "cnpg-database-applied"}
    # The other operators (cert-manager, KServe, KubeRay, the Prometheus Operator) stay simulated.
    assert {"cnpg-cluster-healthy"} < _names(every) and len(with_real_operator) == len(every) - 2


def test_every_real_operator_annotation_names_an_image_built_here_that_the_chart_runs():
    annotated = {
        s["metadata"]["annotations"][kwok_operators.REAL_OPERATOR_IMAGE]
        for s in kwok_operators.simulated_stages(set())
        if kwok_operators.REAL_OPERATOR_IMAGE in s["metadata"].get("annotations", {})
    }
    assert annotated == {image.ref for image in images.BINARY_IMAGES}
    # A chart bump that moves the operator's tag must move the image built here (and so the annotation) with it.
    assert images.CNPG_OPERATOR.ref in _operator_images_dev_renders("cloudnative-pg")


def test_the_operator_image_is_built_from_the_module_version_its_tag_names():
    go_mod = (REPO / "dev" / "local-cluster" / "go" / "cnpg" / "go.mod").read_text()
    tag = images.CNPG_OPERATOR.ref.rsplit(":", 1)[1]
    assert f"github.com/cloudnative-pg/cloudnative-pg v{tag}\n" in go_mod
