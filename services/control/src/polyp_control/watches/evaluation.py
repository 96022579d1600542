"""A watch's check judged now: the target version from the registry, failed runs from the database; one Verdict."""

from __future__ import annotations

import asyncio
import time

from ..registry import ModelRegistry, ModelVersionInfo
from .schemas import Freshness, Quality, RunFailures, Verdict, WatchSpec
from .store import WatchStore

Targets = dict[str, ModelVersionInfo | None]  # versions looked up in one round, by alias or number


async def evaluate(spec: WatchSpec, registry: ModelRegistry, store: WatchStore, targets: Targets | None = None) -> Verdict:
    """`targets` memoises the registry lookups of one round (the default watches all judge champion)."""
    check = spec.check
    if isinstance(check, RunFailures):
        failed = await asyncio.to_thread(store.failed_runs, time.time() - check.window_hours * 3600)
        return Verdict(
            firing=failed >= check.count,
            alert_type="training_failures",
            value=failed,
            message=f"{failed} training run(s) failed in the last {check.window_hours:g} h (limit {check.count - 1})",
        )
    if targets is None:
        targets = {}
    if spec.target not in targets:
        targets[spec.target] = await registry.target(spec.target)
    target = targets[spec.target]
    if isinstance(check, Freshness):
        return _freshness(check, spec.target, target, registry.model_name)
    return _quality(check, spec.target, target)


def _label(target: ModelVersionInfo, name: str) -> str:
    return f"{target.name} v{target.version}" + ("" if name.isdigit() else f" ({name})")


def _freshness(check: Freshness, name: str, target: ModelVersionInfo | None, model_name: str) -> Verdict:
    if target is None:
        return Verdict(firing=True, alert_type="model_stale", message=f"no model {model_name!r} is {name} yet: nothing is served")
    age_h = (time.time() - target.trained_at.timestamp()) / 3600
    return Verdict(
        firing=age_h > check.max_age_hours,
        alert_type="model_stale",
        value=round(age_h, 4),
        message=f"{_label(target, name)} is {age_h:.1f} h old (limit {check.max_age_hours:g} h)",
    )


def _quality(check: Quality, name: str, target: ModelVersionInfo | None) -> Verdict:
    value = target.metric(check.metric) if target else None
    if target is None or value is None:
        what = f"{_label(target, name)} has no {check.metric}" if target else f"no version is {name}"
        return Verdict(firing=False, alert_type="model_quality_low", message=f"{what}: nothing to judge")
    judged = f"{_label(target, name)} {check.metric} {value:.3f}"
    if check.floor is not None and value < check.floor:
        return Verdict(
            firing=True, alert_type="model_quality_low", value=value, message=f"{judged} is below the floor {check.floor:g}"
        )
    if check.ceiling is not None and value > check.ceiling:
        return Verdict(
            firing=True,
            alert_type="model_quality_suspicious",
            value=value,
            message=f"{judged} is above {check.ceiling:g}: check for leakage or a broken validation split",
        )
    bounds = " and ".join(
        bound
        for bound in (
            f"at least {check.floor:g}" if check.floor is not None else "",
            f"at most {check.ceiling:g}" if check.ceiling is not None else "",
        )
        if bound
    )
    return Verdict(firing=False, alert_type="model_quality_low", value=value, message=f"{judged} is {bounds}")
