"""Watches: persisted checks of the served model and of training runs, managed over /v1/watches.

A watch names its target (a registered model version by alias, default `champion`: the version the
platform serves, or by number), a check (freshness, quality, run_failures), its own interval and
severity. The lease holder evaluates the watches that are due; each one sends one alert when an
episode starts and one when it resolves, both carrying the watch id. The transition is a conditional
write (UPDATE … WHERE firing = <what this replica read>), so of two replicas racing only one publishes,
and a restart neither repeats an open alert nor forgets one.

The environment's three watches (MODEL_STALE_HOURS, DICE_FLOOR, DICE_CEILING: the chart's values) are
created on first start and follow those settings on every start, until edited through the API.

    schemas.py     what a watch is (the API's models), the defaults, a verdict
    store.py       the database: specs, state, the conditional writes
    evaluation.py  one check judged against the registry and the runs table
    service.py     Watches: management, the evaluation round, publishing
"""

from .schemas import SERVED, TARGET_PATTERN, Freshness, Quality, RunFailures, Verdict, Watch, WatchSpec, WatchState, default_specs
from .service import Watches

__all__ = [
    "SERVED",
    "TARGET_PATTERN",
    "Freshness",
    "Quality",
    "RunFailures",
    "Verdict",
    "Watch",
    "WatchSpec",
    "WatchState",
    "Watches",
    "default_specs",
]
