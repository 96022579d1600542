"""Least-privilege storage: each component has its own MinIO user, and each user reaches only its buckets.

Evaluated offline from the rendered minio chart (policies and users as its Jobs create them). The real MinIO
enforcing the same policies is tests/cluster/test_real_node.py::test_each_minio_user_reaches_only_its_buckets.
"""

from __future__ import annotations

import pytest

from polyp_gitops import s3_access
from polyp_gitops.crossref import bootstrap_secret_specs
from polyp_gitops.repo import ENVIRONMENTS

BUCKETS = ("datasets", "models", "mlflow", "ray")
# What each user may do, per bucket; anything not listed is refused.
ACCESS = {
    "training": {"datasets": "read", "models": "write", "ray": "write"},
    "serving": {"models": "read"},
    "mlflow": {"mlflow": "write"},
    "dataset-publisher": {"datasets": "write"},
}
READ = ("s3:ListBucket", "s3:GetObject")
WRITE = ("s3:PutObject", "s3:DeleteObject")
# The components that talk to S3, each with its user's Secret; no other component references one.
SECRET_OF = {"training": "s3-training", "inference": "s3-serving", "mlflow": "s3-mlflow"}


def _access(user: s3_access.User, bucket: str) -> str:
    def may(action: str) -> bool:
        return user.may(action, f"arn:aws:s3:::{bucket}" if action == "s3:ListBucket" else f"arn:aws:s3:::{bucket}/a/key")

    return s3_access.access_level(all(map(may, READ)), any(map(may, WRITE)))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_minio_user_reaches_only_its_buckets(rendered, env):
    users = s3_access.minio_users(rendered[env].apps["minio"].objects)
    assert set(users) == set(ACCESS)
    granted = {name: {b: _access(user, b) for b in BUCKETS} for name, user in users.items()}
    wanted = {name: {b: ACCESS[name].get(b, "none") for b in BUCKETS} for name in ACCESS}
    assert granted == wanted
    for user in users.values():  # nobody administers MinIO or makes buckets: the chart's Job does, as root
        assert not any(user.may(a, "arn:aws:s3:::*") for a in ("admin:CreateUser", "s3:CreateBucket", "s3:PutBucketPolicy"))


def test_a_user_on_the_builtin_readwrite_policy_would_fail_the_check():
    """What every component had before: one user, readwrite on every bucket."""
    user = s3_access.User("polyp", "s3-credentials", "readwrite", tuple(s3_access.BUILTIN_POLICIES["readwrite"]))
    assert {b: _access(user, b) for b in BUCKETS} == dict.fromkeys(BUCKETS, "write")


def test_an_explicit_deny_wins_over_an_allow():
    statements = (
        {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::models/*"]},
        {"Effect": "Deny", "Action": ["s3:DeleteObject"], "Resource": ["arn:aws:s3:::models/triton/*"]},
    )
    user = s3_access.User("u", "s", "p", statements)
    assert user.may("s3:DeleteObject", "arn:aws:s3:::models/other")
    assert not user.may("s3:DeleteObject", "arn:aws:s3:::models/triton/1/model.onnx")
    assert not user.may("s3:GetObject", "arn:aws:s3:::datasets/x")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_component_holds_its_own_users_secret(rendered, env):
    def s3_secrets(objects: list[dict]) -> set[str]:
        text = repr(objects)
        return {
            name for name in {"s3-training", "s3-serving", "s3-mlflow", "s3-datasets", "s3-credentials"} if f"'{name}'" in text
        }

    held = {app: s3_secrets(a.objects) for app, a in rendered[env].apps.items() if app != "minio"}
    assert {app: names for app, names in held.items() if names} == {app: {name} for app, name in SECRET_OF.items()}


def test_install_sh_generates_each_users_secret_with_its_access_key(repo_root, rendered):
    """The chart's Job reads each user's secret key in `minio`; the component reads the same values in `polyp`
    (install.sh copies a Secret's values across namespaces by name). The access key must be the user's."""
    specs = bootstrap_secret_specs(repo_root)
    for user in s3_access.minio_users(rendered["dev"].apps["minio"].objects).values():
        spec = specs[("minio", user.secret)]
        assert spec == {"AWS_ACCESS_KEY_ID": user.access_key, "AWS_SECRET_ACCESS_KEY": "@random"}, user
    for secret in SECRET_OF.values():
        assert specs[("polyp", secret)] == specs[("minio", secret)], secret
    assert ("polyp", "s3-datasets") not in specs, (
        "the dataset publisher's keys stay with operators, not in the platform's namespace"
    )
