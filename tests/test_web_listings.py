"""Status, history and alerts read rows as tuples: the same JSON as the models give, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.api.serializers import alert_json, run_json
from app.core.pagination import encode_cursor
from app.models import Alert, JobRun

T0 = datetime(2026, 3, 1, 12, 0, 0)


def _runs():
    rows = []
    for i in range(7):
        at = T0 + timedelta(minutes=i // 2)  # pairs share a time: the cursor's id breaks the tie
        rows.append(
            JobRun.create(
                id=f"run-{i}",
                job_name="forecast",
                queue="forecast",
                trigger="scheduled" if i % 3 else "manual",
                status="finished" if i % 2 else "failed",
                enqueued_at=at,
                started_at=at + timedelta(seconds=1),
                ended_at=None if i == 6 else at + timedelta(seconds=2, microseconds=250),
                attempts=i,
                result={"status": "completed", "n": i, "nested": {"b": [1, 2.5, None], "a": 'é"'}},
                error="boom" if i % 2 == 0 else None,
                slot=at if i % 3 else None,
            )
        )
    return rows


def test_status_is_the_models_json(client):
    for run in _runs():
        body = client.get(f"/api/jobs/forecast/{run.id}").get_json()
        assert body == run_json(JobRun.get_by_id(run.id))
    assert client.get("/api/jobs/daily-summary/run-1").status_code == 404
    missing = client.get("/api/jobs/forecast/no-such-run")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_history_pages_walk_every_run_once_in_order(client):
    _runs()
    expected = [run_json(r) for r in JobRun.select().order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())]
    seen, cursor = [], None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(f"/api/jobs/forecast/history?{query}").get_json()
        seen += body["runs"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_history_filters(client):
    _runs()
    body = client.get("/api/jobs/forecast/history?status=finished&trigger=scheduled").get_json()
    expected = (
        JobRun.select()
        .where((JobRun.status == "finished") & (JobRun.trigger == "scheduled"))
        .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
    )
    assert body == {"runs": [run_json(r) for r in expected], "next_cursor": None}


def test_alerts_pages_and_filters_match_the_models(client):
    for i in range(5):
        Alert.create(
            type="demand_spike" if i % 2 else "capacity_warning",
            severity="high" if i < 3 else "low",
            title=f"t{i}",
            message="m",
            subject=f"s{i}",
            figures={"score": i + 0.5},
            fingerprint=f"f{i}",
            resolved=bool(i % 2),
            created_at=T0 + timedelta(hours=i // 2),
            last_seen_at=T0 + timedelta(hours=i),
        )
    newest = list(Alert.select().order_by(Alert.created_at.desc(), Alert.id.desc()))
    first = client.get("/api/alerts?limit=3").get_json()
    assert first["alerts"] == [alert_json(a) for a in newest[:3]]
    second = client.get(f"/api/alerts?limit=3&cursor={first['next_cursor']}").get_json()
    assert second == {"alerts": [alert_json(a) for a in newest[3:]], "next_cursor": None}
    high = client.get(f"/api/alerts?severity=high&since={(T0 + timedelta(hours=1)).isoformat()}Z").get_json()
    assert [a["id"] for a in high["alerts"]] == [
        a.id for a in newest if a.severity == "high" and a.created_at >= T0 + timedelta(hours=1)
    ]
    assert all(isinstance(a["resolved"], bool) for a in first["alerts"])


def test_bad_cursors_are_400s(client):
    _runs()
    for cursor in ("x", "%%%", encode_cursor(T0, 5), "A" * 300):
        response = client.get(f"/api/jobs/forecast/history?cursor={cursor}")
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request", cursor
    wrong_type = client.get(f"/api/alerts?cursor={encode_cursor(T0, 'run-1')}")
    assert wrong_type.status_code == 400
