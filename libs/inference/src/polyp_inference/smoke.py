"""polyp-smoke --url URL: is the deployed model serving? Exit 0 if so, 1 (with the reason) if not.

Checks, in order: server live, server ready, model ready, one prediction on a bundled image
(mask size equals the image size), and reports the latency. The e2e workflow and humans use it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from importlib import resources

from PIL import Image

from polyp_core.repository import DEFAULT_MODEL_NAME

from .backends import TritonBackend
from .client import InferenceClient
from .errors import InferenceError, SmokeFailure


def bundled_image() -> bytes:
    return resources.files("polyp_inference").joinpath("data/smoke.png").read_bytes()


async def smoke(url: str, model: str, image: bytes, content_type: str, timeout_s: float) -> list[str]:
    """The lines of a passing report; raises SmokeFailure naming the first check that failed."""
    backend = TritonBackend(url, model, timeout_s=timeout_s)
    client = InferenceClient(backend)
    report = []
    try:
        for what, check in [
            ("server live", lambda c: c.is_server_live()),
            ("server ready", lambda c: c.is_server_ready()),
            (f"model {model} ready", lambda c: c.is_model_ready(model)),
        ]:
            if not await backend.call(f"report {what}", check):
                raise SmokeFailure(f"{what}: no")
            report.append(f"ok  {what}")
        started = time.perf_counter()
        prediction = await client.predict(image, content_type)
        latency = (time.perf_counter() - started) * 1000
        if prediction.mask_png is None or prediction.boxes is None:
            raise SmokeFailure("the prediction carries no mask or no boxes although both were asked for")
        mask = Image.open(io.BytesIO(prediction.mask_png))
        if mask.size != (prediction.width, prediction.height):
            raise SmokeFailure(f"mask is {mask.size}, image is {(prediction.width, prediction.height)}")
        report.append(
            f"ok  prediction by {model} version {prediction.version}: {prediction.width}x{prediction.height}, "
            f"polyp area {prediction.area_fraction:.1%}, {len(prediction.boxes)} region(s), {latency:.0f} ms"
        )
    except InferenceError as exc:
        raise SmokeFailure(exc.message) from exc
    finally:
        await client.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="polyp-smoke", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="Triton / KServe v2 HTTP endpoint, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--image", type=argparse.FileType("rb"), help="a JPEG or PNG (default: a bundled image)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    image = args.image.read() if args.image else bundled_image()
    content_type = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
    try:
        for line in asyncio.run(smoke(args.url, args.model, image, content_type, args.timeout)):
            print(line)
    except SmokeFailure as exc:
        print(f"polyp-smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print("polyp-smoke: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
