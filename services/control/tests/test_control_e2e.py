"""The local loop end to end: trigger -> Ray job trains -> model registered -> freshness alert resolves -> SSE."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from control_helpers import TOKEN, read_auth

from polyp_dev.local_ray import LocalRayHead
from polyp_dev.net import free_port

pytestmark = [pytest.mark.ray, pytest.mark.training]


def test_trigger_train_register_and_the_freshness_alert_resolves_over_sse(control_server, tmp_path, monkeypatch):
    import aiohttp

    # As under `.venv/bin/pytest` with no venv on PATH: the job must still find polyp-train.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    from polyp_train.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", n=12, size=96, seed=5)
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with LocalRayHead(free_port(), log=tmp_path / "ray.log") as ray:
        server = control_server(RAY_ADDRESS=ray.address, TRAINING_DATA=str(data), MLFLOW_TRACKING_URI=mlflow_uri,
                                POLYP_CHECKPOINT_URI=str(tmp_path / "checkpoints"), WATCH_INTERVAL_S="2",
                                RUN_POLL_INTERVAL_S="1")

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
                async with session.post(f"{server.url}/v1/runs", headers=headers, json={
                        "epochs": 1, "workers": 1, "size": 64, "encoder": "resnet18", "batch_size": 4,
                        "dice_threshold": 0.0}) as response:
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
    assert run["result"]["version"] == latest["version"] == "1"
    assert latest["dataset_fingerprint"] == run["result"]["dataset_fingerprint"]
    kinds = [(e["type"], e["state"]) for e in events]
    assert kinds.index(("model_stale", "firing")) < kinds.index(("model_stale", "resolved"))
    assert (tmp_path / "repo" / "polyp-segmenter" / "1" / "model.onnx").is_file()
