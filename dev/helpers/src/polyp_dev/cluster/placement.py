"""Which pods run for real: those whose every image is loaded on the real node.

A MutatingAdmissionPolicy (CEL, evaluated inside the API server: no webhook pod is needed) adds the real
node's nodeSelector and toleration to such a pod when it is created. The charts stay as they are; every
other pod goes to a kwok node, where it is simulated. update() rewrites the policy's image list after each load.
"""

from __future__ import annotations

import json

from .control_plane import kubectl
from .node import REAL_NODE_LABEL, REAL_NODE_TAINT
from .processes import wait_until

POLICY = "polyp-real-node-placement"


def _patches() -> str:
    """The JSON patches, in CEL: add to nodeSelector and tolerations, or create them."""
    key = f'"/spec/nodeSelector/" + jsonpatch.escapeKey("{REAL_NODE_LABEL}")'
    toleration = json.dumps({**REAL_NODE_TAINT, "operator": "Equal"})
    return (
        "(has(object.spec.nodeSelector)"
        f' ? [JSONPatch{{op: "add", path: {key}, value: "true"}}]'
        f' : [JSONPatch{{op: "add", path: "/spec/nodeSelector", value: {{"{REAL_NODE_LABEL}": "true"}}}}])'
        " + (has(object.spec.tolerations)"
        f' ? [JSONPatch{{op: "add", path: "/spec/tolerations/-", value: {toleration}}}]'
        f' : [JSONPatch{{op: "add", path: "/spec/tolerations", value: [{toleration}]}}])'
    )


def policy(images: list[str]) -> list[dict]:
    """The policy and its binding for these image references."""
    listed = json.dumps(sorted(images))
    every_image_loaded = (
        f"object.spec.containers.all(c, c.image in {listed})"
        f" && (!has(object.spec.initContainers) || object.spec.initContainers.all(c, c.image in {listed}))"
    )
    api = "admissionregistration.k8s.io/v1beta1"
    return [
        {
            "apiVersion": api,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": POLICY},
            "spec": {
                "matchConstraints": {
                    "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
                },
                "matchConditions": [{"name": "every-image-loaded", "expression": every_image_loaded}],
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": _patches()}}],
            },
        },
        {
            "apiVersion": api,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": POLICY},
            "spec": {"policyName": POLICY},
        },
    ]


def _placed(image: str) -> bool:
    """Whether the API server now sends a pod of this image to the real node (a server-side dry run)."""
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "polyp-placement-probe", "namespace": "default"},
        "spec": {"containers": [{"name": "probe", "image": image}]},
    }
    result = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe), check=False)
    return result.returncode == 0 and REAL_NODE_LABEL in json.loads(result.stdout)["spec"].get("nodeSelector", {})


def update(images: list[str]) -> None:
    """Apply the policy for these images and wait until the API server enforces it (it loads policies a moment later)."""
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": policy(images)}))
    if images:
        wait_until(lambda: all(_placed(image) for image in images), 60, "the real node's placement policy", interval_s=0.5)
