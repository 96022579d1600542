"""Schemathesis hooks (SCHEMATHESIS_HOOKS): the two string formats the schedule schema names, generated as a
client writes them: a five-field crontab and an IANA time zone."""

from __future__ import annotations

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
