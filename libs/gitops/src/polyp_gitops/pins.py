"""The pins an environment file carries, read and rewritten in place.

A pin is an image tag of one of our images (components.<c>.values.image.tag, and where another component runs
that image, its copy of the tag: IMAGE_USERS), the model
version an environment serves (components.inference.values.model.version), or that version's
model.onnx digest (model.sha256, empty when not pinned by digest): the digest travels with the
version, so "version 7" in prod is the same bytes dev served, not whatever prod's registry calls 7. Rewrites touch the
one scalar on its line and nothing else, so comments, order and formatting survive and a
diff shows exactly the lines that moved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from .errors import PinError  # raised here, and importable from here
from .repo import check_environment

IMAGE_TAG = ("image", "tag")
MODEL_VERSION = ("model", "version")
MODEL_SHA256 = ("model", "sha256")
MODEL_COMPONENT = "inference"
# Tags that move: never in git, never rendered. The charts' polyp.image helper (charts/polyp-lib) refuses the
# same list at render time; tests/manifests/test_structure.py keeps the two equal.
FLOATING_TAGS = frozenset({"latest", "main", "master", "stable", "edge", "dev"})
# What a bump of our own images accepts: a semantic version or a git commit SHA (optionally "sha-" prefixed).
IMMUTABLE_TAG = re.compile(r"^(v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?|(sha-)?[0-9a-f]{7,40})$")
MODEL_VERSION_FORMAT = re.compile(r"^[1-9]\d*$")
MODEL_SHA256_FORMAT = re.compile(r"^([0-9a-f]{64})?$")  # empty: no digest pinned
SCALAR_STOP = re.compile(r"[,}\]\s#]")  # what ends a plain scalar in block or flow style


@dataclass(frozen=True)
class Pin:
    component: str
    key: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.component} {'.'.join(self.key)}"


def env_file(env: str, root: Path) -> Path:
    return root / "environments" / check_environment(env) / "values.yaml"


def image_components(root: Path) -> list[str]:
    """Components built from this repo's images: own charts whose values carry image.tag."""
    catalog = yaml.safe_load((root / "apps" / "values.yaml").read_text())["components"]
    found = []
    for name, component in sorted(catalog.items()):
        if component.get("path"):
            chart_values = yaml.safe_load((root / component["path"] / "values.yaml").read_text())
            if isinstance(chart_values.get("image"), dict) and "tag" in chart_values["image"]:
                found.append(name)
    return found


# Images another component runs too, where an environment says so: dev's RayService (charts/inference, backend
# rayserve) runs the training image. A bump of the image moves these copies of its tag in the same commit.
IMAGE_USERS = {"training": (Pin(MODEL_COMPONENT, ("rayserve", "image", "tag")),)}


def image_users(env: str, component: str, root: Path) -> list[Pin]:
    """The copies of component's image tag that env's file carries."""
    data = YAML().load(env_file(env, root).read_text())
    return [pin for pin in IMAGE_USERS.get(component, ()) if _has(data, pin)]


def _has(data: CommentedMap, pin: Pin) -> bool:
    try:
        _node(data, pin, "")
        return True
    except PinError:
        return False


def pin_value(env: str, pin: Pin, root: Path) -> str:
    return str(_node(YAML().load(env_file(env, root).read_text()), pin, env)[pin.key[-1]])


def promoted_pins(root: Path) -> list[Pin]:
    return [Pin(c, IMAGE_TAG) for c in image_components(root)] + [
        Pin(MODEL_COMPONENT, MODEL_VERSION),
        Pin(MODEL_COMPONENT, MODEL_SHA256),
    ]


def _node(data: CommentedMap, pin: Pin, env: str) -> CommentedMap:
    """The mapping that holds the pin's last key; PinError when the file has no such pin."""
    try:
        parent = data["components"][pin.component]["values"]
        for key in pin.key[:-1]:
            parent = parent[key]
        parent[pin.key[-1]]
        return parent
    except (KeyError, TypeError):
        raise PinError(f"environments/{env}/values.yaml has no {'.'.join(pin.key)} for {pin.component}") from None


def read_pins(env: str, root: Path) -> dict[Pin, str]:
    data = YAML().load(env_file(env, root).read_text())
    return {pin: str(_node(data, pin, env)[pin.key[-1]]) for pin in promoted_pins(root)}


def own_images(env: str, root: Path) -> dict[str, str]:
    """Component -> the image reference the environment runs of each image built from this repo (no render)."""
    values = yaml.safe_load(env_file(env, root).read_text()).get("components", {})
    catalog = yaml.safe_load((root / "apps" / "values.yaml").read_text())["components"]
    tags = read_pins(env, root)
    found = {}
    for component in image_components(root):
        default = yaml.safe_load((root / catalog[component]["path"] / "values.yaml").read_text())["image"]["repository"]
        override = (values.get(component) or {}).get("values", {}).get("image", {}).get("repository")
        found[component] = f"{override or default}:{tags[Pin(component, IMAGE_TAG)]}"
    return found


def _scalar_end(line: str, start: int) -> int:
    if line[start] in "\"'":
        end = line.index(line[start], start + 1)
        return end + 1
    stop = SCALAR_STOP.search(line, start)
    return stop.start() if stop else len(line)


def rewrite(text: str, env: str, changes: dict[Pin, str]) -> str:
    """Return text with each pin's scalar replaced by its new value (always double-quoted)."""
    data = YAML().load(text)
    lines = text.splitlines(keepends=True)
    places = {pin: tuple(_node(data, pin, env).lc.value(pin.key[-1])) for pin in changes}
    # Right to left: a rewrite that changes a scalar's length leaves the columns before it on its line valid
    # (a flow mapping carries the model's version and digest on one line).
    for pin in sorted(changes, key=places.__getitem__, reverse=True):
        row, col = places[pin]
        line = lines[row]
        lines[row] = f'{line[:col]}"{changes[pin]}"{line[_scalar_end(line, col) :]}'
    return "".join(lines)


def check_tag(tag: str) -> str:
    if not IMMUTABLE_TAG.match(tag):
        raise PinError(f"tag {tag!r} is not immutable: use a version (1.4.2) or a git commit SHA")
    return tag


def check_model_version(version: str) -> str:
    if not MODEL_VERSION_FORMAT.match(version):
        raise PinError(f"model version {version!r} is not an MLflow model version number")
    return version


def check_model_sha256(digest: str) -> str:
    if not MODEL_SHA256_FORMAT.match(digest):
        raise PinError(f"model digest {digest!r} is not a sha256 (64 lowercase hex digits; the version's onnx_sha256 tag)")
    return digest


def requires_model_digest(env: str, root: Path) -> bool:
    """Whether env takes a model pin only with its digest (its model.requireSha256; charts/inference's schema too)."""
    values = yaml.safe_load(env_file(env, root).read_text()).get("components") or {}
    model = ((values.get(MODEL_COMPONENT) or {}).get("values") or {}).get("model") or {}
    return model.get("requireSha256") is True


def lacks_required_digest(env: str, version: str, sha256: str, root: Path) -> bool:
    """A version pinned without its digest where env requires one (an empty version, no pin yet, needs none)."""
    return bool(version) and not sha256 and requires_model_digest(env, root)


def check_model_pin(env: str, version: str, sha256: str, root: Path) -> None:
    """What pin-model refuses: a version without its digest where env requires one."""
    if lacks_required_digest(env, version, sha256, root):
        raise PinError(
            f"{env} takes a model only with its digest (model.requireSha256): model version {version} has no sha256; "
            "pin it with --sha256 (the version's onnx_sha256 tag)"
        )


def check_pin(pin: Pin, value: str) -> str:
    """What a bump or pin-model would accept for this pin."""
    checks: dict[tuple[str, ...], Callable[[str], str]] = {MODEL_VERSION: check_model_version, MODEL_SHA256: check_model_sha256}
    return checks.get(pin.key, check_tag)(value)
