"""What a live cluster must show once Argo CD has synced an environment; shared by the local-cluster
tests and e2e-kind.yml (`polyp-gitops wait-healthy`), so both paths assert the same things.

- every Application reaches Synced and Healthy within a deadline;
- sync waves happen in order: an Application of wave w first appears only when every Application of
  an earlier wave has been seen Synced and Healthy (the root app creates the children wave by wave).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .tools import run

WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"


@dataclass
class AppState:
    name: str
    wave: int
    sync: str
    health: str
    message: str

    @property
    def ready(self) -> bool:
        return self.sync == "Synced" and self.health == "Healthy"


def applications(namespace: str = "argocd", kubeconfig: str | None = None) -> dict[str, AppState]:
    """Every Application in `namespace`, as kubectl sees it now."""
    args = ["kubectl", "-n", namespace, "get", "applications.argoproj.io", "-o", "json"]
    if kubeconfig:
        args.insert(1, f"--kubeconfig={kubeconfig}")
    items = json.loads(run(args))["items"]
    states = {}
    for item in items:
        status = item.get("status") or {}
        conditions = [c.get("message", "") for c in status.get("conditions") or []]
        operation = (status.get("operationState") or {}).get("message", "")
        states[item["metadata"]["name"]] = AppState(
            name=item["metadata"]["name"],
            wave=int((item["metadata"].get("annotations") or {}).get(WAVE_ANNOTATION, "0")),
            sync=(status.get("sync") or {}).get("status", "?"),
            health=(status.get("health") or {}).get("status", "?"),
            message="; ".join(m for m in [*conditions, operation] if m)[:300],
        )
    return states


@dataclass
class SyncRecord:
    """What was seen while waiting, by snapshot number: when each Application first appeared and first was ready."""

    started: float = field(default_factory=time.monotonic)
    snapshots: int = 0
    appeared: dict[str, int] = field(default_factory=dict)
    ready: dict[str, int] = field(default_factory=dict)
    ready_after_s: dict[str, float] = field(default_factory=dict)
    waves: dict[str, int] = field(default_factory=dict)

    def observe(self, states: dict[str, AppState]) -> None:
        for name, state in states.items():
            self.waves[name] = state.wave
            self.appeared.setdefault(name, self.snapshots)
            if state.ready and name not in self.ready:
                self.ready[name] = self.snapshots
                self.ready_after_s[name] = time.monotonic() - self.started
        self.snapshots += 1

    def judged(self, root: str) -> list[str]:
        """Children whose appearance was seen (those already there at the first look cannot be judged)."""
        return sorted(n for n, first in self.appeared.items() if n != root and first > 0)

    def wave_violations(self, root: str) -> list[str]:
        """Children that appeared before every Application of an earlier wave was seen Synced and Healthy."""
        violations = []
        for name in self.judged(root):
            early = sorted(
                other
                for other, wave in self.waves.items()
                if other != root and wave < self.waves[name] and self.ready.get(other, self.snapshots) > self.appeared[name]
            )
            if early:
                violations.append(f"{name} (wave {self.waves[name]}) appeared before {', '.join(early)} was Synced and Healthy")
        return violations


def wait_synced_healthy(
    root: str,
    timeout_s: float,
    interval_s: float = 1.0,
    namespace: str = "argocd",
    kubeconfig: str | None = None,
    log: Callable[[str], object] = print,
) -> SyncRecord:
    """Poll until every Application (more than the root) is Synced and Healthy; TimeoutError names the rest."""
    record = SyncRecord()
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    while True:
        states = applications(namespace, kubeconfig)
        record.observe(states)
        not_ready = [s for s in states.values() if not s.ready]
        if len(states) > 1 and not not_ready:
            log(f"{len(states)}/{len(states)} Applications Synced and Healthy after {time.monotonic() - record.started:.0f} s")
            return record
        if time.monotonic() - last_report > 20:
            last_report = time.monotonic()
            log(
                f"{len(states) - len(not_ready)}/{len(states)} Applications Synced and Healthy; waiting on "
                + ", ".join(f"{s.name} {s.sync}/{s.health}" for s in not_ready)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not Synced and Healthy within {timeout_s:.0f} s:\n"
                + "\n".join(f"  {s.name} (wave {s.wave}): {s.sync}/{s.health} {s.message}" for s in not_ready)
            )
        time.sleep(interval_s)


def main_wait(env: str, timeout_s: float, log: Callable[[str], object] = print) -> int:
    """`polyp-gitops wait-healthy`: wait, then check the waves; 0 only if both hold."""
    root = f"polyp-{env}"
    try:
        record = wait_synced_healthy(root, timeout_s, log=log)
    except TimeoutError as error:
        print(f"polyp-gitops: {error}", file=sys.stderr)
        return 1
    violations = record.wave_violations(root)
    log(f"sync waves in order for {len(record.judged(root))} Applications seen appearing")
    for violation in violations:
        print(f"polyp-gitops: sync wave out of order: {violation}", file=sys.stderr)
    return 1 if violations else 0
