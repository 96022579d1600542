"""Who the rendered cluster lets read Secrets in every namespace.

A ClusterRole bound by a ClusterRoleBinding applies in all namespaces; one that may get, list or watch
Secrets gives its subjects every credential in the cluster. Bound by a RoleBinding it stays in that
namespace, so only ClusterRoleBindings count here, and roles that aggregate into Kubernetes' own
view/edit/admin (bound widely by people, not rendered here).
"""

from __future__ import annotations

from collections.abc import Iterable

READ_VERBS = {"get", "list", "watch", "*"}
BUILTIN_AGGREGATES = ("rbac.authorization.k8s.io/aggregate-to-view", "rbac.authorization.k8s.io/aggregate-to-edit",
                      "rbac.authorization.k8s.io/aggregate-to-admin")  # fmt: skip


def _reads_secrets(rule: dict) -> bool:
    return (
        bool({"", "*"} & set(rule.get("apiGroups", [])))
        and bool({"secrets", "*"} & set(rule.get("resources", [])))
        and bool(READ_VERBS & set(rule.get("verbs", [])))
        and not rule.get("resourceNames")  # named Secrets only: not every Secret
    )


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and matchExpressions) against a role's labels; an empty one selects nothing."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, values, op = e["key"], e.get("values") or [], e["operator"]
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]:
            return False
    return True


def _aggregated_rules(role: dict, roles: list[dict]) -> list[dict]:
    """A ClusterRole's rules, with those of the roles its aggregationRule selects (the API server merges them)."""
    rules = list(role.get("rules") or [])
    for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors", []):
        for other in roles:
            if other is not role and _selects(selector, other["metadata"].get("labels") or {}):
                rules.extend(other.get("rules") or [])
    return rules


def cluster_secret_readers(objects: Iterable[dict]) -> dict[str, list[str]]:
    """ClusterRole name -> who it lets read Secrets in every namespace: the subjects ("Kind namespace/name") a
    ClusterRoleBinding gives it, or the built-in role it aggregates into ("aggregated into view")."""
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
    for role in roles:
        labels = role["metadata"].get("labels") or {}
        into = [k.rsplit("-", 1)[1] for k in BUILTIN_AGGREGATES if labels.get(k) == "true"]
        if into and any(_reads_secrets(r) for r in role.get("rules") or []):
            readers.setdefault(role["metadata"]["name"], []).extend(f"aggregated into {b}" for b in into)
    return readers
