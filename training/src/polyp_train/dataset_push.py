"""polyp-train dataset push DIR s3://datasets/NAME: a dataset into the cluster's object store.

Whatever layout DIR has (see ``data``), the bucket gets the plain one training reads fastest,
``images/`` and ``masks/`` (plus a video dataset's sequence map), each object with its sha256 as
metadata. A push that stops half-way is resumed by running it again: objects already there with the
same sha256 are skipped. ``manifest.json`` (every key and sha256, and the fingerprint) is written
last, so its presence means the upload is complete. The fingerprint printed is the one a training
run with the default split records.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import storage
from .data import check_pairs, discover, materialize
from .prepare import parse_source
from .splits import CVC_README, sequence_map, split_dataset
from .splits import fingerprint as split_fingerprint

DEFAULT_VAL_FRACTION = 0.2


@dataclass
class PushSummary:
    uri: str
    pairs: int
    uploaded: int
    skipped: int
    fingerprint: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def push(source: str, uri: str, cache_dir: Path) -> PushSummary:
    if not storage.is_s3(uri):
        raise ValueError(f"{uri!r}: push to an s3://bucket/prefix")
    local = materialize(parse_source(source).uri, cache_dir)
    samples = check_pairs(discover(local))
    folder = samples[0].image.parent.parent
    files = {f"images/{s.image.name}": s.image for s in samples} | {f"masks/{s.mask.name}": s.mask for s in samples}
    for extra in ("sequences.csv", CVC_README):
        if (folder / extra).is_file():
            files[extra] = folder / extra
    sequences = sequence_map(folder)
    name = parse_source(uri).name  # what `--data s3://…/NAME` is called in a run, part of its fingerprint
    fingerprint = split_fingerprint([split_dataset(name, samples, DEFAULT_VAL_FRACTION, sequences)])
    base = uri.rstrip("/")
    manifest, uploaded, skipped = {}, 0, 0
    for key, path in sorted(files.items()):
        digest = manifest[key] = _sha256(path)
        if storage.object_sha256(f"{base}/{key}") == digest:
            skipped += 1
            continue
        storage.put_file(f"{base}/{key}", path, digest)
        uploaded += 1
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "manifest.json"
        record.write_text(json.dumps({"fingerprint": fingerprint, "pairs": len(samples), "files": manifest}, indent=1))
        storage.put_file(f"{base}/manifest.json", record, _sha256(record))
    return PushSummary(uri, len(samples), uploaded, skipped, fingerprint)
