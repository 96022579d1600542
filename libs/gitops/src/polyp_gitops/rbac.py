"""Who the rendered cluster lets read Secrets in every namespace.

A ClusterRole bound by a ClusterRoleBinding applies in all namespaces; one that may get, list or watch
Secrets gives its subjects every credential in the cluster. Bound by a RoleBinding it stays in that
namespace, so only ClusterRoleBindings count here.
"""

from __future__ import annotations

from collections.abc import Iterable

READ_VERBS = {"get", "list", "watch", "*"}


def _reads_secrets(rule: dict) -> bool:
    return (
        bool({"", "*"} & set(rule.get("apiGroups", [])))
        and bool({"secrets", "*"} & set(rule.get("resources", [])))
        and bool(READ_VERBS & set(rule.get("verbs", [])))
        and not rule.get("resourceNames")  # named Secrets only: not every Secret
    )


def _aggregated_rules(role: dict, roles: list[dict]) -> list[dict]:
    """A ClusterRole's rules, with those of the roles its aggregationRule selects (the API server merges them)."""
    rules = list(role.get("rules") or [])
    for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors", []):
        wanted = selector.get("matchLabels", {})
        for other in roles:
            labels = other["metadata"].get("labels") or {}
            if other is not role and wanted and all(labels.get(k) == v for k, v in wanted.items()):
                rules.extend(other.get("rules") or [])
    return rules


def cluster_secret_readers(objects: Iterable[dict]) -> dict[str, list[str]]:
    """ClusterRole name -> the subjects ("Kind namespace/name") a ClusterRoleBinding gives it, for each
    role that may read Secrets in every namespace."""
    objects = list(objects)
    roles = [o for o in objects if o["kind"] == "ClusterRole"]
    by_name = {r["metadata"]["name"]: r for r in roles}
    readers: dict[str, list[str]] = {}
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        name = binding["roleRef"]["name"]
        role = by_name.get(name)
        if role is None and name not in ("cluster-admin", "admin", "edit"):
            continue  # a built-in role without Secrets (view, system:*)
        if role is None or any(_reads_secrets(r) for r in _aggregated_rules(role, roles)):
            for s in binding.get("subjects") or []:
                readers.setdefault(name, []).append(f"{s['kind']} {s.get('namespace', '')}/{s['name']}".replace(" /", " "))
    return readers
