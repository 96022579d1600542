"""Schemathesis hooks (SCHEMATHESIS_HOOKS): the two string formats the schedule schema names, generated as a
client writes them (a five-field crontab and an IANA time zone), and the two media types /v1/predict's upload
part takes (real JPEG and PNG images, each of its own size and colours)."""

from __future__ import annotations

import io
from zoneinfo import available_timezones

import hypothesis.strategies as st
import schemathesis


def _cron_field(low: int, high: int):
    return st.one_of(
        st.just("*"),
        st.integers(low, high).map(str),
        st.integers(1, high).map(lambda n: f"*/{n}"),
        st.lists(st.integers(low, high), min_size=2, max_size=3, unique=True).map(
            lambda values: ",".join(map(str, sorted(values)))
        ),
    )


schemathesis.openapi.format(
    "cron",
    st.tuples(_cron_field(0, 59), _cron_field(0, 23), _cron_field(1, 28), _cron_field(1, 12), _cron_field(0, 6)).map(" ".join),
)
schemathesis.openapi.format("iana-time-zone", st.sampled_from(sorted(available_timezones())))


def _image(kind: str):
    def encode(size: tuple[int, int], colour: tuple[int, int, int], spot: tuple[int, int, int]) -> bytes:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", size, colour)
        ImageDraw.Draw(image).ellipse((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=spot)
        out = io.BytesIO()
        image.save(out, format=kind)
        return out.getvalue()

    rgb = st.tuples(*[st.integers(0, 255)] * 3)
    return st.builds(encode, st.tuples(st.integers(1, 320), st.integers(1, 320)), rgb, rgb)


schemathesis.openapi.media_type("image/png", _image("PNG"))
schemathesis.openapi.media_type("image/jpeg", _image("JPEG"))
