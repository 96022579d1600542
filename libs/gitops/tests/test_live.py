"""The sync-wave check shared by the local-cluster tests and e2e-kind.yml, on recorded observations."""

from __future__ import annotations

from polyp_gitops.live import AppState, SyncRecord

ROOT = "polyp-dev"


def _snapshot(**apps: tuple[int, bool]) -> dict[str, AppState]:
    """name=(wave, ready) -> what `applications()` returns."""
    states = {ROOT: AppState(ROOT, 0, "Synced", "Progressing", "")}
    for name, (wave, ready) in apps.items():
        states[name] = AppState(name, wave, "Synced" if ready else "OutOfSync", "Healthy" if ready else "Missing", "")
    return states


def _record(*snapshots: dict[str, AppState]) -> SyncRecord:
    record = SyncRecord()
    for snapshot in snapshots:
        record.observe(snapshot)
    return record


def test_waves_in_order_pass():
    record = _record(
        _snapshot(),
        _snapshot(crds=(-2, False)),
        _snapshot(crds=(-2, True)),
        _snapshot(crds=(-2, True), operator=(-1, False)),
        _snapshot(crds=(-2, True), operator=(-1, True), app=(0, False)),
        _snapshot(crds=(-2, True), operator=(-1, True), app=(0, True)),
    )
    assert record.wave_violations(ROOT) == []
    assert record.judged(ROOT) == ["app", "crds", "operator"]


def test_a_later_wave_appearing_before_an_earlier_one_is_ready_is_reported():
    record = _record(_snapshot(), _snapshot(crds=(-2, False), app=(0, False)), _snapshot(crds=(-2, True), app=(0, True)))
    assert record.wave_violations(ROOT) == ["app (wave 0) appeared before crds was Synced and Healthy"]


def test_an_earlier_wave_that_appears_only_later_is_reported():
    # The root skipped wave -1 entirely: it shows up after wave 0 did.
    record = _record(_snapshot(), _snapshot(app=(0, True)), _snapshot(app=(0, True), operator=(-1, True)))
    assert record.wave_violations(ROOT) == ["app (wave 0) appeared before operator was Synced and Healthy"]


def test_a_ready_app_that_later_flaps_is_not_a_violation():
    record = _record(
        _snapshot(),
        _snapshot(crds=(-2, True)),
        _snapshot(crds=(-2, False), app=(0, False)),
        _snapshot(crds=(-2, True), app=(0, True)),
    )
    assert record.wave_violations(ROOT) == []


def test_apps_already_there_at_the_first_look_are_not_judged():
    record = _record(_snapshot(crds=(-2, False), app=(0, False)), _snapshot(crds=(-2, True), app=(0, True)))
    assert record.judged(ROOT) == []
    assert record.wave_violations(ROOT) == []
