"""Bump an image tag in one environment; promote pins from one environment to the next.

Each is one commit touching one environment file. Rollback is `git revert <commit>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import git
from .errors import PinError
from .pins import (
    IMAGE_TAG,
    MODEL_COMPONENT,
    MODEL_SHA256,
    MODEL_VERSION,
    Pin,
    check_model_pin,
    check_model_sha256,
    check_model_version,
    check_pin,
    check_tag,
    env_file,
    image_components,
    image_users,
    lacks_required_digest,
    pin_value,
    promoted_pins,
    read_pins,
    rewrite,
)
from .repo import ENVIRONMENTS, check_environment


@dataclass(frozen=True)
class Change:
    pin: Pin
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.pin}: {self.old} -> {self.new}"


def _env(env: str) -> str:
    try:
        return check_environment(env)
    except ValueError as exc:
        raise PinError(str(exc)) from None


def _apply(root: Path, env: str, changes: list[Change], message: str, commit: bool) -> str | None:
    """Write the changes to the environment file (after every check passed) and commit."""
    if not changes:
        return None
    path = env_file(env, root)
    path.write_text(rewrite(path.read_text(), env, {c.pin: c.new for c in changes}))
    return git.commit(root, path, message) if commit else None


def bump(env: str, component: str, tag: str, root: Path, commit: bool = True) -> Change | None:
    """Set one component's image tag in one environment, and the copies of it that other components run
    (pins.IMAGE_USERS), in one commit; the component's own change, None when it already has that tag."""
    _env(env)
    components = image_components(root)
    if component not in components:
        raise PinError(f"unknown component {component!r}: images are built for {', '.join(components)}")
    check_tag(tag)
    if commit:
        git.require_clean(root)
    own = Pin(component, IMAGE_TAG)
    olds = {pin: pin_value(env, pin, root) for pin in (own, *image_users(env, component, root))}
    changes = [Change(pin, old, tag) for pin, old in olds.items() if old != tag]
    _apply(root, env, changes, f"build: update {component} image to {tag} in {env}", commit)
    return next((c for c in changes if c.pin == own), None)


def pin_model(env: str, version: str, root: Path, commit: bool = True, sha256: str = "") -> list[Change]:
    """Pin the MLflow model version an environment serves, and its model.onnx digest (empty: none; a
    digest left from another version would keep the new pods from starting, so it is always rewritten)."""
    _env(env)
    check_model_version(version)
    check_model_sha256(sha256)
    check_model_pin(env, version, sha256, root)
    if commit:
        git.require_clean(root)
    old = read_pins(env, root)
    wanted = {Pin(MODEL_COMPONENT, MODEL_VERSION): version, Pin(MODEL_COMPONENT, MODEL_SHA256): sha256}
    changes = [Change(pin, old[pin], value) for pin, value in wanted.items() if old[pin] != value]
    digest = f" (sha256 {sha256[:12]}…)" if sha256 else ""
    _apply(root, env, changes, f"model: serve model version {version}{digest} in {env}", commit)
    return changes


def plan(source: str, target: str, root: Path) -> list[Change]:
    """What `promote source -> target` would change: pins that differ, in a stable order."""
    _env(source), _env(target)
    if ENVIRONMENTS.index(target) != ENVIRONMENTS.index(source) + 1:
        raise PinError(f"promote one step at a time along {' -> '.join(ENVIRONMENTS)}; {source} -> {target} is not a step")
    old, new = read_pins(target, root), read_pins(source, root)
    changes = [Change(pin, old[pin], new[pin]) for pin in promoted_pins(root) if old[pin] != new[pin]]
    # Copies of an image's tag that both environments carry travel with it (dev's RayService: staging has none).
    for change in list(changes):
        for pin in set(image_users(source, change.pin.component, root)) & set(image_users(target, change.pin.component, root)):
            if (was := pin_value(target, pin, root)) != change.new:
                changes.append(Change(pin, was, change.new))
    return changes


def promote(source: str, target: str, root: Path, commit: bool = True) -> list[Change]:
    changes = plan(source, target, root)
    for change in changes:  # never promote something that would not have been accepted by a bump
        check_pin(change.pin, change.new)
    pinned = read_pins(source, root)
    version, sha256 = pinned[Pin(MODEL_COMPONENT, MODEL_VERSION)], pinned[Pin(MODEL_COMPONENT, MODEL_SHA256)]
    if changes and lacks_required_digest(target, version, sha256, root):
        raise PinError(
            f"{target} takes a model only with its digest (model.requireSha256), and {source} pins version {version} "
            f"without one: pin it there with `polyp-gitops pin-model --env {source} --version {version} --sha256 "
            "<its onnx_sha256 tag>`, then promote"
        )
    if commit and changes:
        git.require_clean(root)
    body = "\n".join(f"- {c}" for c in changes)
    _apply(root, target, changes, f"promote: {source} -> {target}\n\n{body}\n", commit)
    return changes
