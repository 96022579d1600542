"""Local folders and S3 prefixes behind one small interface (is_s3, split_s3 and s3_client come from
polyp_core.s3, which serving shares; callers use them from here too).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.s3 import is_s3, s3_client, split_s3

from .errors import StorageUnavailable

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem


def _storage_error(uri: str, exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"cannot reach {uri}: {exc}")


def list_objects(uri: str) -> list[str]:
    """Keys (relative to the prefix) under an S3 prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri)
    prefix = f"{prefix}/" if prefix else ""
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"][len(prefix) :] for page in pages for obj in page.get("Contents", [])]
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(uri, exc) from exc


def exists(uri: str) -> bool:
    if not is_s3(uri):
        return Path(uri).exists()
    return bool(list_objects(uri))


def object_sha256(uri: str) -> str | None:
    """The sha256 an object was uploaded with (its `sha256` metadata), None when absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        return s3_client().head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise _storage_error(uri, exc) from exc
    except BotoCoreError as exc:
        raise _storage_error(uri, exc) from exc


def put_file(uri: str, path: Path, sha256: str) -> None:
    """One object, recording its sha256 as metadata (a later push skips it when unchanged)."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        s3_client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), Metadata={"sha256": sha256})
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(uri, exc) from exc


def put_bytes(uri: str, data: bytes) -> None:
    """One PUT: S3 makes the object visible whole or not at all."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(uri, exc) from exc


def _inside(key: str) -> str:
    """A key as a path that stays under the target folder: `p//etc/x` or `../x` must not write /etc/x or ../x."""
    return posixpath.normpath("/" + key).lstrip("/")


def download_prefix(uri: str, cache_root: Path) -> Path:
    """Copy an S3 prefix into a local cache folder named after the URI; return the folder."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri)
    target = cache_root / hashlib.sha256(uri.encode()).hexdigest()[:16]
    client = s3_client()
    try:
        for key in list_objects(uri):
            local = target / _inside(key)
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, f"{prefix}/{key}" if prefix else key, str(local))
    except (BotoCoreError, ClientError) as exc:
        raise _storage_error(uri, exc) from exc
    return target


def upload_dir(local: Path, uri: str) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        put_bytes(f"{uri.rstrip('/')}/{path.relative_to(local).as_posix()}", path.read_bytes())


def pyarrow_filesystem(uri: str) -> tuple[FileSystem | None, str]:
    """(filesystem, path) for Ray Train's storage: pyarrow's S3 with the same endpoint, or None locally."""
    if not is_s3(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        return None, str(Path(uri).resolve())
    from pyarrow import fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    options = {"endpoint_override": endpoint} if endpoint else {}
    if endpoint and endpoint.startswith("http://"):
        options["scheme"] = "http"
    return fs.S3FileSystem(region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), **options), uri[len("s3://") :]
