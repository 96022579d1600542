"""Alert buses (real Redis and in-process), SSE with Last-Event-ID replay, and the model endpoints."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from control_helpers import auth, read_auth, register_version

from polyp_control import db
from polyp_control.alerts import STREAM, Alert, LocalBus, RedisBus
from polyp_control.errors import SlowSubscriber


@pytest.fixture(params=["redis", "in-process"])
def bus_factory(request, redis_url, tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    if request.param == "redis":
        import redis

        redis.from_url(redis_url).delete(STREAM)  # each test starts from an empty history

    def make(history_max=1000):
        return RedisBus(redis_url, history_max) if request.param == "redis" else LocalBus(engine, history_max)

    return make


async def _take(iterator, n, timeout=30.0):
    return [await asyncio.wait_for(anext(iterator), timeout) for _ in range(n)]


def test_history_replay_and_live_delivery_without_gaps_or_duplicates(bus_factory):
    async def scenario():
        bus = bus_factory()
        first = [await bus.publish(Alert(type="t", message=f"m{i}")) for i in range(3)]
        assert [a.message for a in await bus.history()] == ["m0", "m1", "m2"]
        assert [a.message for a in await bus.history(after=first[0].id)] == ["m1", "m2"]

        # A client that saw m0 reconnects: it gets m1, m2 from history, then m3 live, nothing twice.
        stream = bus.subscribe(after=first[0].id)
        replayed = await _take(stream, 2)
        await bus.publish(Alert(type="t", message="m3"))
        live = await _take(stream, 1)
        assert [a.message for a in replayed + live] == ["m1", "m2", "m3"]
        await stream.aclose()

        # A fresh client gets only what is published after it connected.
        fresh = bus.subscribe()
        pending = asyncio.ensure_future(anext(fresh))
        await asyncio.sleep(0.2)
        await bus.publish(Alert(type="t", message="m4"))
        assert (await asyncio.wait_for(pending, 30)).message == "m4"
        await fresh.aclose()
        await bus.close()

    asyncio.run(scenario())


def test_a_client_that_falls_behind_is_told_to_reconnect_and_catches_up_by_id(bus_factory):
    """Per-client queues are bounded: past the limit the subscription ends with SlowSubscriber, and a new one
    from the last id received replays the rest, in order, nothing twice."""

    async def scenario():
        bus = bus_factory()
        bus.client_queue_max = 4
        stream = bus.subscribe()
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        await bus.publish(Alert(type="t", message="m0"))
        received = [await asyncio.wait_for(pending, 30)]
        for i in range(1, 11):  # ten more while this client reads nothing
            await bus.publish(Alert(type="t", message=f"m{i}"))
        await asyncio.sleep(0.5)  # the Redis reader delivers asynchronously
        with pytest.raises(SlowSubscriber, match="more than 4 alerts behind"):
            while True:
                received.append(await asyncio.wait_for(anext(stream), 30))
        assert [a.message for a in received] == ["m0", "m1", "m2", "m3", "m4"]  # what its queue held
        again = bus.subscribe(after=received[-1].id)
        received += await _take(again, 6)
        assert [a.message for a in received] == [f"m{i}" for i in range(11)]
        await again.aclose()
        await bus.close()

    asyncio.run(scenario())


def test_the_redis_reader_resumes_from_its_last_id_after_an_outage(redis_url):
    """Alerts published while this replica's stream reader has lost Redis reach its connected clients afterwards
    (the reader's next read fails as in an outage longer than the client's retries; other replicas publish on)."""
    import redis
    from redis.exceptions import ConnectionError

    async def scenario():
        redis.from_url(redis_url).delete(STREAM)
        serving, publishing = RedisBus(redis_url), RedisBus(redis_url)
        stream = serving.subscribe()
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        await publishing.publish(Alert(type="t", message="before"))
        assert (await asyncio.wait_for(pending, 30)).message == "before"

        real_xread, outage = serving.reader.xread, asyncio.Event()

        async def xread_through_an_outage(*args, **kwargs):
            if not outage.is_set():
                outage.set()
                raise ConnectionError("Redis unreachable (injected)")
            return await real_xread(*args, **kwargs)

        serving.reader.xread = xread_through_an_outage
        await publishing.publish(Alert(type="t", message="wake the reader"))
        await asyncio.wait_for(outage.wait(), 30)
        for i in range(3):  # published while the reader is away (it backs off 0.5 s)
            await publishing.publish(Alert(type="t", message=f"during {i}"))
        received = [a.message for a in await _take(stream, 4)]
        assert received == ["wake the reader", "during 0", "during 1", "during 2"]
        await stream.aclose()
        await serving.close()
        await publishing.close()

    asyncio.run(scenario())


def test_a_key_is_claimed_once_until_it_expires(bus_factory):
    async def scenario():
        bus, other_replica = bus_factory(), bus_factory()
        key = f"ticket:{time.time()}"
        assert await bus.claim_once(key, 1) is True
        assert await bus.claim_once(key, 1) is False
        if isinstance(bus, RedisBus):  # every replica sees the claim
            assert await other_replica.claim_once(key, 1) is False
        await asyncio.sleep(1.2)
        assert await bus.claim_once(key, 1) is True  # expired with the ticket: the store does not grow
        await bus.close()
        await other_replica.close()

    asyncio.run(scenario())


def test_history_is_capped(bus_factory):
    async def scenario():
        bus = bus_factory(history_max=5)
        for i in range(30):
            await bus.publish(Alert(type="t", message=f"m{i}"))
        history = await bus.history(limit=1000)
        assert history[-1].message == "m29" and len(history) <= 5 + 100  # Redis trims approximately
        await bus.close()

    asyncio.run(scenario())


def test_redis_history_survives_a_service_restart(redis_url):
    async def scenario():
        first = RedisBus(redis_url)
        sent = await first.publish(Alert(type="restart", message="before restart"))
        await first.close()
        second = RedisBus(redis_url)
        assert sent.id in [a.id for a in await second.history(limit=1000)]
        await second.close()

    asyncio.run(scenario())


def test_model_endpoints_read_mlflow(settings):
    from fastapi.testclient import TestClient

    from polyp_control.app import create_app

    with TestClient(create_app(settings), headers=read_auth()) as client:
        assert client.get("/v1/models/latest").status_code == 404
        register_version(settings.mlflow_tracking_uri, dice=0.8)
        register_version(settings.mlflow_tracking_uri, dice=0.9)
        latest = client.get("/v1/models/latest").json()
        assert latest["version"] == "2" and latest["dice"] == pytest.approx(0.9)
        assert latest["aliases"] == []
        [week] = client.get("/v1/models/weekly-dice").json()
        assert week["average_dice"] == pytest.approx(0.85) and week["versions"] == 2
        register_version(settings.mlflow_tracking_uri, dice=0.95, champion=True)
        latest, champion = client.get("/v1/models/latest").json(), client.get("/v1/models/champion").json()
        # MLflow's search leaves aliases out: both routes must say what the registry says of version 3.
        assert latest == champion and latest["version"] == "3" and latest["aliases"] == ["champion"]


def test_sse_over_http_replays_after_last_event_id(control_server, redis_url):
    """Through a real server process: events carry ids; a reconnect with Last-Event-ID misses nothing."""
    import aiohttp

    server = control_server(REDIS_URL=redis_url, WATCH_INTERVAL_S="3600")

    async def read_events(session, headers, n, query=""):
        events, current = [], {}
        async with session.get(f"{server.url}/v1/alerts/stream{query}", headers=headers) as response:
            assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("id:"):
                    current["id"] = line[3:].strip()
                elif line.startswith("data:"):
                    current["data"] = json.loads(line[5:].strip())
                elif line == "" and "data" in current:
                    events.append(current)
                    current = {}
                    if len(events) == n:
                        return events
        return events

    async def scenario():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            bus = RedisBus(redis_url)
            listener = asyncio.ensure_future(read_events(session, read_auth(), 2))
            await asyncio.sleep(1)
            a = await bus.publish(Alert(type="sse", message="one"))
            await bus.publish(Alert(type="sse", message="two"))
            live = await listener
            assert [e["data"]["message"] for e in live] == ["one", "two"] and live[0]["id"] == a.id
            await bus.publish(Alert(type="sse", message="three while away"))
            resumed = await read_events(session, {**read_auth(), "Last-Event-ID": live[-1]["id"]}, 1)
            assert [e["data"]["message"] for e in resumed] == ["three while away"]
            bad = await session.get(f"{server.url}/v1/alerts/stream", headers={**read_auth(), "Last-Event-ID": "garbage"})
            assert bad.status == 422
            # A browser's EventSource cannot send the token: it trades it for a short-lived ticket.
            async with session.post(f"{server.url}/v1/alerts/ticket", headers=read_auth()) as response:
                ticket = (await response.json())["ticket"]
            await bus.publish(Alert(type="sse", message="four"))
            by_ticket = await read_events(session, {"Last-Event-ID": resumed[-1]["id"]}, 1, f"?ticket={ticket}")
            assert [e["data"]["message"] for e in by_ticket] == ["four"]
            reused = await session.get(f"{server.url}/v1/alerts/stream?ticket={ticket}")
            assert reused.status == 401 and "already used" in (await reused.json())["detail"]
            for query in ("", "?ticket=forged.1.x"):
                refused = await session.get(f"{server.url}/v1/alerts/stream{query}")
                assert refused.status == 401
            await bus.close()
            return ticket

    ticket = asyncio.run(scenario())
    import urllib.request

    metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    assert "polyp_sse_clients" in metrics
    log = server.log.read_text()
    assert "ticket=<redacted>" in log and ticket not in log and "forged" not in log  # no ticket in the access log
    runs = urllib.request.urlopen(urllib.request.Request(f"{server.url}/v1/runs", headers=auth())).read()
    assert json.loads(runs) == []
