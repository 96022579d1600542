"""What each MinIO user of the rendered cluster may do.

The minio chart puts everything in one ConfigMap: each policy of `policies` as `policy_N.json`, created under its
name by the `add-policy` script, and each user of `users` in the `add-user` script, which reads the user's secret
key from its Secret and attaches one policy by name (ours or one of MinIO's built-ins).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

# MinIO's built-in policies (cmd/iam.go, policy.DefaultPolicies): each covers every bucket.
BUILTIN_POLICIES: dict[str, list[dict]] = {
    "readwrite": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    "readonly": [{"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:GetObject"], "Resource": ["arn:aws:s3:::*"]}],
    "writeonly": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["arn:aws:s3:::*"]}],
    "consoleAdmin": [{"Effect": "Allow", "Action": ["admin:*", "kms:*", "s3:*"], "Resource": ["arn:aws:s3:::*"]}],
    "diagnostics": [{"Effect": "Allow", "Action": ["admin:*"], "Resource": ["arn:aws:s3:::*"]}],
}


@dataclass(frozen=True)
class User:
    access_key: str
    secret: str  # the Secret (in MinIO's namespace) holding its secret key
    policy: str
    statements: tuple[dict, ...]

    def may(self, action: str, resource: str) -> bool:
        """IAM evaluation as MinIO does it for one action on one ARN: an explicit Deny wins, else any Allow."""
        matching = [s for s in self.statements if _matches(s, action, resource)]
        return bool(matching) and all(s.get("Effect", "Allow") == "Allow" for s in matching)


def access_level(can_read: bool, can_write: bool) -> str:
    """One word for what a user may do in a bucket: write (read and write), read, write-only or none."""
    return "write" if can_read and can_write else "read" if can_read else "write-only" if can_write else "none"


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _matches(statement: dict, action: str, resource: str) -> bool:
    return any(fnmatchcase(action, a) for a in _as_list(statement["Action"])) and any(
        fnmatchcase(resource, r) for r in _as_list(statement.get("Resource", "*"))
    )


def minio_users(objects: Iterable[dict]) -> dict[str, User]:
    """Access key -> User, from the minio chart's rendered ConfigMap (empty when the chart renders no users)."""
    config = next((o for o in objects if o["kind"] == "ConfigMap" and "add-user" in o.get("data", {})), None)
    if config is None:
        return {}
    data = config["data"]
    created = re.findall(r"^createPolicy (\S+) (policy_\d+)$", data.get("add-policy", ""), re.M)
    policies = {name: json.loads(data[f"{file}.json"])["Statement"] for name, file in created}
    users = {}
    # echo ACCESS_KEY > tmp; cat /config/secrets/SECRET/KEY >> tmp (or an inline `echo KEY >> tmp`); createUser POLICY
    user_block = (
        r"^echo (\S+) > \S+\n(?:cat /config/secrets/([^/\s]+)/\S+ >> \S+\n)?(?:#[^\n]*\n|echo [^\n]*>> \S+\n)*createUser (\S+)$"
    )
    for access_key, secret, policy in re.findall(user_block, data["add-user"], re.M):
        statements = policies.get(policy, BUILTIN_POLICIES.get(policy))
        if statements is None:
            raise ValueError(f"MinIO user {access_key} gets policy {policy}, which is neither defined nor built in")
        users[access_key] = User(access_key, secret, policy, tuple(statements))
    return users
