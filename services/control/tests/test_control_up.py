"""`make up` (polyp-up): serves the page and the API on embedded defaults; Ctrl-C stops it quietly with Ray."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import polyp_fixtures
from polyp_dev.net import free_port

pytestmark = pytest.mark.ray


def ray_head_group(port: int) -> int | None:
    """The process group of the `ray start` serving this dashboard port (it leads a session of its own)."""
    out = subprocess.run(["ps", "-eww", "-o", "pgid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pgid, _, args = line.strip().partition(" ")
        if "ray start --head" in args and f"--dashboard-port={port}" in args:
            return int(pgid)
    return None


def processes_in_group(pgid: int) -> list[str]:
    """Live processes of a group (zombies are dead: this container's init may be slow to reap them)."""
    out = subprocess.run(["ps", "-eww", "-o", "pgid=,stat=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [" ".join(row) for row in rows if row[0] == str(pgid) and not row[1].startswith("Z")]


def assert_ray_takes_only_its_token(token_file: Path, ray_port: int, port: int) -> None:
    """The local Ray runs any code its job API is sent: like the cluster's, it takes only the token make up
    generated (owner-only), and the control service is ready on it because it holds that token."""
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    answers = {}
    for who, bearer in (("none", None), ("wrong", "not-the-token"), ("right", token)):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ray_port}/api/jobs/", headers=headers)) as r:
                answers[who] = r.status
        except urllib.error.HTTPError as refused:
            answers[who] = refused.code
    assert answers == {"none": 401, "wrong": 403, "right": 200}, answers
    from polyp_control.jobs import RayJobs

    address = f"http://127.0.0.1:{ray_port}"
    assert asyncio.run(RayJobs(address, token).reachable()) and not asyncio.run(RayJobs(address, "wrong").reachable())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as ready:
            readiness = json.loads(ready.read())
    except urllib.error.HTTPError as unready:  # 503: a required check failed; Ray's is the one asserted here
        readiness = json.loads(unready.read())
    assert readiness["checks"]["ray"]["ok"] is True, readiness


@pytest.mark.parametrize("backend", ["onnxruntime", "rayserve"])
def test_make_up_serves_and_ctrl_c_stops_everything_without_a_traceback(backend, tmp_path):
    port, ray_port = free_port(), free_port()
    env = {
        **os.environ,
        "POLYP_HOME": str(tmp_path / "home"),
        "PORT": str(port),
        "RAY_DASHBOARD_PORT": str(ray_port),
        "PATH": "/usr/bin:/bin",
        "INFERENCE_BACKEND": backend,
    }  # not the venv's PATH: polyp-up must not need it
    for name in ("API_TOKEN", "API_READ_TOKEN", "INFERENCE_URL", "MODEL_VERSION"):
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("polyp-up"))],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # a terminal's process group
    try:
        deadline = time.time() + 300
        while "Ctrl-C stops everything" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        for name in ("api-token", "api-read-token"):  # the write and the read token, generated once, owner-only
            assert (tmp_path / "home" / name).stat().st_mode & 0o777 == 0o600
        token = (tmp_path / "home" / "api-read-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/runs", headers={"Authorization": f"Bearer {token}"})
        for _ in range(120):  # the banner is printed just before uvicorn binds
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the control service did not answer: {log.read_text()[-3000:]}")
        ray_group = ray_head_group(ray_port)
        assert ray_group and len(processes_in_group(ray_group)) > 1, "no Ray head running while make up runs"
        assert_ray_takes_only_its_token(tmp_path / "home" / "ray-token", ray_port, port)
        # No model yet: /predict says so, through the backend asked for (Ray Serve: the application on the head).
        with open(sorted((polyp_fixtures.path("samples/kvasir-seg") / "images").glob("*.jpg"))[0], "rb") as frame:
            body, boundary = frame.read(), "polyp-frame"
        upload = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/predict",
            method="POST",
            data=(
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
                f"Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + body
            + f"\r\n--{boundary}--\r\n".encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(upload, timeout=60)
        detail = refused.value.read().decode()
        assert refused.value.code == 503 and "has no published version" in detail, detail
        assert ("Ray Serve at http://127.0.0.1:" in detail) is (backend == "rayserve"), detail

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole foreground group
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:  # a failed assertion above: still stop Ray through polyp-up, then force
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert "stopping Ray" in output
    assert "Traceback" not in output and "CancelledError" not in output, output[-3000:]
    deadline = time.time() + 30  # stop() has returned; the last workers may take a moment to exit
    while processes_in_group(ray_group) and time.time() < deadline:
        time.sleep(0.5)
    assert processes_in_group(ray_group) == []
