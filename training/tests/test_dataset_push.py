"""polyp-train dataset push into a real S3 server (moto on loopback): checksummed, resumable,
laid out so that `--data s3://…` trains on exactly the pushed pairs with the printed fingerprint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from polyp_train import storage
from polyp_train.data import LAYOUTS
from polyp_train.dataset_push import push
from polyp_train.errors import DatasetError
from polyp_train.prepare import prepare


def test_push_then_train_from_s3_sees_the_same_pairs_and_fingerprint(s3_server, synthetic, tmp_path):
    storage.s3_client().create_bucket(Bucket="datasets-push")
    nested = tmp_path / "download"
    shutil.copytree(synthetic, nested / "Kvasir-SEG")  # the release layout: one folder deeper
    first = push(str(nested), "s3://datasets-push/polyps", tmp_path / "cache")
    assert (first.pairs, first.uploaded, first.skipped) == (12, 24, 0)
    keys = set(storage.list_objects("s3://datasets-push/polyps"))
    assert "manifest.json" in keys and {k.split("/")[0] for k in keys - {"manifest.json"}} == {"images", "masks"}

    from_s3 = prepare(["s3://datasets-push/polyps"], tmp_path / "train-cache", 0.2)
    assert from_s3.fingerprint == first.fingerprint
    assert sorted(s.stem for s in from_s3.train + from_s3.val) == sorted(p.stem for p in (synthetic / "images").iterdir())


def test_an_interrupted_push_resumes_with_what_is_missing(s3_server, synthetic, tmp_path):
    storage.s3_client().create_bucket(Bucket="datasets-resume")
    push(str(synthetic), "s3://datasets-resume/set", tmp_path / "cache")
    client = storage.s3_client()
    for key in ("manifest.json", "images/synthetic-00001.jpg", "masks/synthetic-00002.png"):
        client.delete_object(Bucket="datasets-resume", Key=f"set/{key}")
    result = subprocess.run(
        [sys.executable, "-m", "polyp_train.cli", "dataset", "push", str(synthetic), "s3://datasets-resume/set"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "POLYP_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["uploaded"], summary["skipped"]) == (2, 22)
    manifest = json.loads(client.get_object(Bucket="datasets-resume", Key="set/manifest.json")["Body"].read())
    assert manifest["pairs"] == 12 and manifest["fingerprint"] == summary["fingerprint"] and len(manifest["files"]) == 24


def test_keys_that_climb_out_of_the_prefix_stay_in_the_cache_folder(s3_server, tmp_path):
    """An object named `set//etc/x` or `set/../x` lands under the dataset's cache folder, nowhere else."""
    client = storage.s3_client()
    client.create_bucket(Bucket="datasets-climb")
    for key in ("set//abs/escaped.txt", "set/../up.txt", "set/images/../../../up2.txt"):
        client.put_object(Bucket="datasets-climb", Key=key, Body=b"x")
    cache = tmp_path / "cache"
    folder = storage.download_prefix("s3://datasets-climb/set", cache)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(
        f"{folder.relative_to(tmp_path).as_posix()}/{name}" for name in ("abs/escaped.txt", "up.txt", "up2.txt")
    )


def test_a_bad_s3_dataset_is_named_by_its_uri_not_the_nodes_cache(s3_server, synthetic, tmp_path):
    storage.s3_client().create_bucket(Bucket="datasets-nomask")
    for image in sorted((synthetic / "images").iterdir()):
        storage.put_bytes(f"s3://datasets-nomask/set/images/{image.name}", image.read_bytes())
    with pytest.raises(DatasetError) as failed:
        prepare(["kvasir=s3://datasets-nomask/set"], tmp_path / "train-cache", 0.2)
    assert str(failed.value) == "dataset kvasir: s3://datasets-nomask/set has no masks/ folder (expected " + LAYOUTS + ")"
