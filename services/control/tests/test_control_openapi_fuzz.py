"""Property-based fuzzing of the control service's OpenAPI document with the Schemathesis CLI and every one
of its checks, against the service as a real server process: each operation gets generated valid and
invalid requests; every answer must be documented (status, headers, body schema), valid data accepted,
invalid data refused with a 4xx, nothing a 5xx. The SSE stream is left out: it never ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from control_helpers import TOKEN, register_version

FUZZ = Path(__file__).parent / "fuzz"


def test_every_operation_keeps_to_its_openapi_document(control_server, tmp_path):
    from polyp_core.repository import DEFAULT_MODEL_NAME, MODEL_FILE
    from polyp_dev.onnx_models import constant_model

    # Something behind every route: a model to serve for /v1/predict, a registered champion for /v1/models.
    constant_model(tmp_path / "repo" / DEFAULT_MODEL_NAME / "1" / MODEL_FILE, logit=2.0)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_version(tracking_uri, dice=0.9, champion=True)
    server = control_server(MODEL_REPO=str(tmp_path / "repo"), MLFLOW_TRACKING_URI=tracking_uri)
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(  # every check is on by default; the config file states its one narrow exception
        [
            str(schemathesis),
            "--config-file",
            str(FUZZ / "schemathesis.toml"),
            "--no-color",
            "run",
            f"{server.url}/openapi.json",
            "--max-examples",
            "25",
            "--exclude-path",
            "/v1/alerts/stream",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(FUZZ),
            "SCHEMATHESIS_HOOKS": "schemathesis_formats",
        },
    )
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    assert "generated" in result.stdout and "passed" in result.stdout, result.stdout[-3000:]  # it did run
    # Schemathesis warns when an operation refuses most of what its schema admits: the schema would promise more
    # than the API keeps (an image part the API refuses was one).
    assert "Schema validation mismatch" not in result.stdout, result.stdout[-5000:]
