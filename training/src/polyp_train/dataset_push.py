"""polyp-train dataset push DIR s3://datasets/NAME: a dataset into the cluster's object store.

Whatever layout DIR has (see ``data``), the bucket gets the plain one training reads fastest,
``images/`` and ``masks/`` (plus a video dataset's sequence map), each object with its sha256 as
metadata. A push that stops half-way is resumed by running it again: objects already there with the
same sha256 are skipped. ``manifest.json`` (every key and sha256, and the fingerprint) is written
last, so its presence means the upload is complete. The fingerprint printed is the one a training
run with the default split records.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from polyp_core.job import parse_source

from . import storage
from .data import file_digest
from .prepare import DEFAULT_VAL_FRACTION, prepare
from .splits import CVC_README


@dataclass
class PushSummary:
    uri: str
    pairs: int
    uploaded: int
    skipped: int
    fingerprint: str


def push(source: str, uri: str, cache_dir: Path) -> PushSummary:
    if not storage.is_s3(uri):
        raise ValueError(f"{uri!r}: push to an s3://bucket/prefix")
    # The very preparation a run on `--data s3://…/NAME` does, under that name: the same checks, and
    # the fingerprint it will record.
    prepared = prepare([f"{parse_source(uri).name}={parse_source(source).uri}"], cache_dir, DEFAULT_VAL_FRACTION)
    samples = prepared.train + prepared.val
    folder = samples[0].image.parent.parent
    files = {f"images/{s.image.name}": s.image for s in samples} | {f"masks/{s.mask.name}": s.mask for s in samples}
    for extra in ("sequences.csv", CVC_README):
        if (folder / extra).is_file():
            files[extra] = folder / extra
    base = uri.rstrip("/")
    manifest, uploaded, skipped = {}, 0, 0
    for key, path in sorted(files.items()):
        digest = manifest[key] = file_digest(path).hex()
        if storage.object_sha256(f"{base}/{key}") == digest:
            skipped += 1
            continue
        storage.put_file(f"{base}/{key}", path, digest)
        uploaded += 1
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "manifest.json"
        record.write_text(json.dumps({"fingerprint": prepared.fingerprint, "pairs": len(samples), "files": manifest}, indent=1))
        storage.put_file(f"{base}/manifest.json", record, file_digest(record).hex())
    return PushSummary(uri, len(samples), uploaded, skipped, prepared.fingerprint)
