"""S3 URIs (``s3://bucket/prefix``) and the one client configuration training and serving share.

The endpoint comes from the standard variable ``AWS_ENDPOINT_URL`` (MinIO in a cluster, any S3 store
elsewhere) and credentials from the usual AWS variables. boto3 is imported on use: polyp_core stays light.
"""

from __future__ import annotations


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, prefix.strip("/")


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3}))
