"""The local loop end to end, as `make up` runs it: trigger with the defaults -> Ray job trains -> the model
passes the quality gate and is published -> freshness alert resolves over SSE -> polyp-train evaluate scores
the served model on real frames."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from control_helpers import TOKEN, read_auth

from polyp_dev.local_ray import LocalRayHead
from polyp_dev.net import free_port

pytestmark = [pytest.mark.ray, pytest.mark.training]


def test_the_first_default_run_passes_the_gate_resolves_freshness_and_can_be_evaluated(
    control_server, kvasir_samples, tmp_path, monkeypatch
):
    import aiohttp

    # As under `.venv/bin/pytest` with no venv on PATH: the job must still find polyp-train.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("TRAINING_DATA", raising=False)

    from polyp_dev.up import ensure_dataset

    data = ensure_dataset(tmp_path / "home")  # make up's synthetic dataset
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with LocalRayHead(free_port(), log=tmp_path / "ray.log") as ray:
        server = control_server(
            RAY_ADDRESS=ray.address,
            TRAINING_DATA=str(data),
            MLFLOW_TRACKING_URI=mlflow_uri,
            POLYP_CHECKPOINT_URI=str(tmp_path / "checkpoints"),
            WATCH_INTERVAL_S="2",
            RUN_POLL_INTERVAL_S="1",
        )

        async def scenario():
            headers = {"Authorization": f"Bearer {TOKEN}"}
            events: list[dict] = []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600), headers=read_auth()) as session:

                async def listen():
                    async with session.get(f"{server.url}/v1/alerts/stream") as response:
                        async for raw in response.content:
                            line = raw.decode().strip()
                            if line.startswith("data:"):
                                events.append(json.loads(line[5:]))
                                if (events[-1]["type"], events[-1]["state"]) == ("model_stale", "resolved"):
                                    return

                listener = asyncio.ensure_future(listen())
                for _ in range(100):  # no model yet: the freshness watch fires first
                    if any(e["type"] == "model_stale" and e["state"] == "firing" for e in events):
                        break
                    await asyncio.sleep(0.2)
                # Every parameter at its default, the gate at the service's quality floor: a newcomer's first run.
                async with session.post(f"{server.url}/v1/runs", headers=headers, json={}) as response:
                    assert response.status == 201, await response.text()
                    run = await response.json()
                deadline = time.time() + 420
                while time.time() < deadline:
                    async with session.get(f"{server.url}/v1/runs/{run['id']}") as response:
                        run = await response.json()
                    if run["status"] not in ("submitting", "pending", "running"):
                        break
                    await asyncio.sleep(2)
                if run["status"] != "succeeded":
                    async with session.get(f"{server.url}/v1/runs/{run['id']}/logs") as response:
                        raise AssertionError(f"run {run['status']}: {run['message']}\n{(await response.text())[-3000:]}")
                await asyncio.wait_for(listener, 60)
                async with session.get(f"{server.url}/v1/models/latest") as response:
                    latest = await response.json()
                return run, latest, events

        run, latest, events = asyncio.run(scenario())
    assert run["params"]["dice_threshold"] == 0.70, "gated at the quality floor (DICE_FLOOR)"
    assert run["result"]["champion"] and run["result"]["val_dice"] >= 0.70, run["result"]["gate_reason"]
    # Version 1 is the fp32 model; version 2 its INT8 twin if that held its validation Dice (then served).
    served = run["result"]["int8_version"] or run["result"]["version"]
    assert run["result"]["version"] == "1" and served in ("1", "2") and latest["version"] == served
    assert latest["dataset_fingerprint"] == run["result"]["dataset_fingerprint"]
    kinds = [(e["type"], e["state"]) for e in events]
    assert kinds.index(("model_stale", "firing")) < kinds.index(("model_stale", "resolved"))
    assert (tmp_path / "repo" / "polyp-segmenter" / "1" / "model.onnx").is_file()

    # The published (served) version, scored on real Kvasir-SEG frames with a model card.
    evaluation = subprocess.run(
        [
            "polyp-train",
            "evaluate",
            "--model",
            str(tmp_path / "repo"),
            "--data",
            f"kvasir={kvasir_samples}",
            "--split",
            "all",
            "--out",
            str(tmp_path / "card"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
    )
    assert evaluation.returncode == 0, evaluation.stderr
    summary = json.loads(evaluation.stdout.strip().splitlines()[-1])
    assert summary["model"]["version"] == served and summary["metrics"]["kvasir"]["images"] == 5
    assert 0 <= summary["metrics"]["kvasir"]["mean_dice"] <= 1
    assert (tmp_path / "card" / "model_card.md").is_file()
