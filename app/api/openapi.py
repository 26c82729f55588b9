"""The API's OpenAPI 3.1 document, served at `/api/openapi.json`.

Query parameters and request bodies come from the same pydantic models that validate them,
so the document cannot drift from what the routes accept.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel

from app.api.audit import AuditQuery
from app.api.forecast import AccuracyQuery
from app.api.jobs import RetryFailedQuery
from app.api.reports import DailyReportQuery, ReportPageQuery
from app.api.schemas import RUN_ID_PATTERN, AlertActionBody, AlertQuery, HistoryQuery, TriggerBody
from app.core.audit import Outcome, Source
from app.core.catalog import JOBS
from app.core.ops_events import EventKind
from app.core.run_history import RunQuery

bp = Blueprint("openapi", __name__)

ISO_TIME = {"type": ["string", "null"], "format": "date-time"}


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if "anyOf" in prop:  # Optional[X]: the query parameter is X, absent when null
            options = [o for o in prop.pop("anyOf") if o.get("type") != "null"]
            prop.update(options[0] if len(options) == 1 else {"anyOf": options})
            prop.pop("default", None)
        required = name in schema.get("required", [])
        params.append({"name": name, "in": "query", "required": required, "schema": prop})
    return params


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, ref: str, status: str = "200") -> dict:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        }
    }


JOB_NAME = {"name": "job_name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(JOBS)}}
RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    # `history` is the history route's own segment, not a run id (/api/jobs/{job}/history)
    "schema": {"type": "string", "pattern": RUN_ID_PATTERN, "maxLength": 64, "not": {"enum": ["history"]}},
}
BEARER = [{"bearer": []}]
READ = [{"bearer": []}, {}]  # reads need the token when API_READ_AUTH=on, or by default in production

RUN = {
    "type": "object",
    "required": ["job_id", "status", "attempts"],
    "properties": {
        "job_id": {"type": "string"},
        "job_name": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "scheduled", "started", "finished", "failed", "canceled", "stopped", "skipped"],
        },
        "trigger": {"type": "string", "enum": ["scheduled", "manual", "retry"]},
        "queue": {"type": "string"},
        "result": {"type": ["object", "null"]},
        "error": {"type": ["string", "null"]},
        "enqueued_at": ISO_TIME,
        "started_at": ISO_TIME,
        "ended_at": ISO_TIME,
        "slot": ISO_TIME,
        "attempts": {"type": "integer", "minimum": 0},
        "duration_s": {"type": ["number", "null"], "description": "/api/runs: start to end of the last attempt"},
        "active": {"type": "boolean", "description": "/api/runs: queued, waiting for a retry or running"},
        "retry_of": {"type": ["string", "null"], "description": "the run this run retries (trigger retry)"},
        "state_detail": {
            "type": ["string", "null"],
            "description": "a run waiting for its retry only: e.g. 'retrying at 14:05 UTC (attempt 2 of 4)'",
        },
        "next_retry_at": ISO_TIME,
        "next_attempt": {"type": "integer"},
        "max_attempts": {"type": ["integer", "null"]},
    },
}
ATTEMPT = {
    "type": "object",
    "required": ["number", "status", "started_at", "ended_at", "error", "traceback"],
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "status": {
            "type": "string",
            "enum": ["started", "finished", "failed", "stopped", "canceled", "abandoned", "interrupted"],
        },
        "worker": {"type": ["string", "null"]},
        "started_at": ISO_TIME,
        "ended_at": ISO_TIME,
        "error": {"type": ["string", "null"]},
        "traceback": {"type": ["string", "null"], "description": "at most 64 KiB (its end)"},
        "next_retry_at": {**ISO_TIME, "description": "when RQ runs the run again after this attempt"},
    },
}
RUN_ATTEMPTS = {
    "allOf": [
        {"$ref": "#/components/schemas/Run"},
        {
            "type": "object",
            "required": ["attempts_detail", "retried_by"],
            "properties": {
                "attempts_detail": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
                "retried_by": {"type": "array", "items": {"type": "string"}, "description": "newest first"},
            },
        },
    ]
}
RETRIED = {
    "type": "object",
    "required": ["job_id", "retry_of", "covers", "created"],
    "properties": {
        "job_id": {"type": ["string", "null"], "description": "the new run (null: no failed run to retry)"},
        "job_name": {"type": "string"},
        "retry_of": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "covers": {"type": "array", "items": {"type": "string"}, "description": "the failed runs it answers for"},
        "created": {"type": "boolean", "description": "false: nothing new was queued"},
        "retries": {
            "type": "array",
            "items": {"type": "string"},
            "description": "every new run, oldest first (a per-slot job such as daily-summary retries each failed slot)",
        },
        "message": {"type": "string"},
        "waits_for": {"type": "string"},
    },
}
ALERT = {
    "type": "object",
    "required": ["id", "type", "severity", "source", "subject", "created_at"],
    "properties": {
        "id": {"type": "integer"},
        "type": {"type": "string"},
        "severity": {"type": "string", "enum": ["high", "medium", "low"]},
        "title": {"type": "string"},
        "message": {"type": "string"},
        "source": {"type": "string"},
        "job_id": {"type": ["string", "null"]},
        "subject": {"type": "string"},
        "figures": {"type": "object"},
        "occurrences": {"type": "integer"},
        "resolved": {"type": "boolean"},
        "created_at": ISO_TIME,
        "last_seen_at": ISO_TIME,
        "state": {"type": "string", "enum": ["open", "acknowledged", "resolved"]},
        "last_job_id": {"type": ["string", "null"], "description": "the latest run that saw it"},
        "acknowledged_at": {"type": ["string", "null"], "format": "date-time"},
        "acknowledged_by": {"type": ["string", "null"]},
        "resolved_at": {"type": ["string", "null"], "format": "date-time"},
        "resolved_by": {"type": ["string", "null"]},
        "comment": {"type": ["string", "null"]},
        "notification": {"type": ["object", "null"], "description": "the alert webhook's delivery: state, at, error"},
    },
}
ALERT_ID = {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}


def _alert_action(summary: str, body: dict) -> dict:
    return {
        "post": {
            "summary": summary,
            "security": BEARER,
            "parameters": [ALERT_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
            "responses": {
                **_ok("the alert", "Alert"),
                "400": _error("bad body"),
                "401": _error("no or wrong token"),
                "404": _error("no such alert"),
                "409": _error("already resolved"),
                "503": _error("database down"),
            },
        }
    }


SCHEDULE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(JOBS)}}
SCHEDULE = {
    "type": "object",
    "required": ["name", "cron", "queue", "paused", "next_run", "last_run", "last_status"],
    "properties": {
        "name": {"type": "string"},
        "cron": {"type": "string"},
        "timezone": {"type": "string"},
        "queue": {"type": "string"},
        "task": {"type": "string"},
        "registered": {
            "type": ["boolean", "null"],
            "description": "the scheduler has registered its template (null: unknown, Redis unavailable)",
        },
        "paused": {
            "type": ["boolean", "null"],
            "description": "paused: its slots are skipped until resumed (null: unknown, Redis unavailable)",
        },
        "state_note": {"type": ["string", "null"], "description": "why a field is unknown"},
        "next_run": ISO_TIME,
        "last_run": ISO_TIME,
        "last_run_id": {"type": ["string", "null"]},
        "last_status": {"type": ["string", "null"]},
        "changed": {"type": "boolean", "description": "pause/resume only: whether the state changed"},
        "message": {"type": "string"},
    },
}


def _schedule_action(summary: str, ok: dict) -> dict:
    return {
        "post": {
            "summary": summary,
            "security": BEARER,
            "parameters": [SCHEDULE_NAME],
            "responses": {
                **ok,
                "401": _error("no or wrong token"),
                "403": _error("the token has the read scope only"),
                "404": _error("unknown schedule"),
                "503": _error("Redis or database down"),
            },
        }
    }


SCHEDULE_PATHS = {
    "/api/schedules": {
        "get": {
            "summary": "The cron schedules: next run, last run and its status, paused",
            "security": READ,
            "responses": {
                **_ok("schedules", "ScheduleList"),
                "401": _error("no or wrong token"),
                "503": _error("database down (without Redis: cron and next run only)"),
            },
        }
    },
    "/api/schedules/{name}/pause": _schedule_action(
        "Pause a schedule (idempotent; kept across scheduler restarts)", _ok("the schedule", "Schedule")
    ),
    "/api/schedules/{name}/resume": _schedule_action(
        "Resume a paused schedule (idempotent)", _ok("the schedule", "Schedule")
    ),
    "/api/schedules/{name}/run": _schedule_action(
        "Run the schedule's job now, as a manual trigger",
        {**_ok("queued", "Triggered", "202"), "409": _error("a run is queued or running")},
    ),
    "/metrics": {
        "get": {
            "summary": "Prometheus text format: runs, durations, queues, workers, schedules",
            "security": READ,
            "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "401": _error("no or wrong token"),
            },
        }
    },
}

REPORT = {
    "type": "object",
    "required": ["kind", "date", "report", "created_at"],
    "properties": {
        "kind": {"type": "string", "enum": ["daily"]},
        "date": {"type": "string", "format": "date"},
        "job_id": {"type": ["string", "null"]},
        "created_at": ISO_TIME,
        "report": {"type": "object", "description": "alerts by type, severity and source; runs by job and status"},
    },
}
REPORT_PATHS = {
    "/api/reports/daily": {
        "get": {
            "summary": "The daily report of one UTC day (the latest when no date is given)",
            "security": READ,
            "parameters": _query_parameters(DailyReportQuery),
            "responses": {
                **_ok("the report", "Report"),
                "400": _error("bad date"),
                "401": _error("no or wrong token"),
                "404": _error("no report for that day"),
                "503": _error("database down"),
            },
        }
    },
    "/api/reports": {
        "get": {
            "summary": "Daily reports, newest day first",
            "security": READ,
            "parameters": _query_parameters(ReportPageQuery),
            "responses": {
                **_ok("a page of reports", "ReportPage"),
                "400": _error("bad limit or cursor"),
                "401": _error("no or wrong token"),
                "503": _error("database down"),
            },
        }
    },
}

ACCURACY_RUN = {
    "type": "object",
    "required": ["horizon_start", "horizon_days", "mase", "coverage", "points"],
    "properties": {
        "run_id": {"type": ["string", "null"]},
        "horizon_start": {"type": "string", "format": "date"},
        "horizon_days": {"type": "integer"},
        "created_at": ISO_TIME,
        "scored_at": ISO_TIME,
        "lines": {"type": "integer", "description": "lines forecast (run scores only)"},
        "line": {"type": "string", "description": "the line (line scores only)"},
        "mase": {"type": ["number", "null"], "description": "MASE of the P50 (mean over lines for a run)"},
        "coverage": {"type": ["number", "null"], "description": "share of actuals inside P10..P90"},
        "points": {"type": "integer", "description": "line-days scored (with complete actuals)"},
    },
}
FORECAST_PATHS = {
    "/api/forecast/accuracy": {
        "get": {
            "summary": "How past forecast runs scored against the actuals (MASE, P10-P90 coverage), newest first",
            "security": READ,
            "parameters": _query_parameters(AccuracyQuery),
            "responses": {
                **_ok("scored runs", "AccuracyPage"),
                "400": _error("bad limit or line"),
                "401": _error("no or wrong token"),
                "503": _error("database down"),
            },
        }
    },
}

TREND_PATHS = {
    "/api/trends": {
        "get": {
            "summary": "Per job: runs, failures and p50/p95 durations per bucket (24h: hourly, 7d: 6-hourly, 30d: daily)",
            "security": READ,
            "parameters": [
                {"name": "window", "in": "query", "schema": {"type": "string", "enum": ["24h", "7d", "30d"]}},
                {"name": "job", "in": "query", "schema": {"type": "string"}, "description": "one job (all by default)"},
            ],
            "responses": {
                **_ok("the trends", "Object"),
                "400": _error("bad window"),
                "401": _error("no or wrong token"),
                "404": _error("unknown job"),
                "503": _error("database down"),
            },
        }
    },
}


RUN_LIST_PATHS = {
    "/api/runs": {
        "get": {
            "summary": "Runs of every job, newest first, filtered by job, status, trigger, time and error text",
            "description": "Empty values mean no filter. `total` counts matching runs up to 1000 "
            "(`total_capped`: more match). The dashboard's run list (/dashboard/runs) takes the same parameters.",
            "security": READ,
            "parameters": _query_parameters(RunQuery),
            "responses": {
                **_ok("a page of runs", "RunListPage"),
                "400": _error("bad filter, limit or cursor"),
                "401": _error("no or wrong token"),
                "503": _error("database down"),
            },
        }
    },
}


AUDIT_ENTRY = {
    "type": "object",
    "required": ["id", "at", "actor", "action", "outcome", "source"],
    "properties": {
        "id": {"type": "integer"},
        "at": ISO_TIME,
        "actor": {"type": "string", "description": 'user or token name, "cli:<os user>", or "anonymous"'},
        "role": {"type": ["string", "null"], "enum": ["viewer", "operator", None]},
        "action": {"type": "string", "description": "e.g. run.trigger, run.cancel, schedule.pause, rq.requeue"},
        "target": {"type": ["string", "null"], "description": 'e.g. "job:forecast run:<id>"'},
        "outcome": {"type": "string", "enum": [o.value for o in Outcome]},
        "reason": {"type": ["string", "null"], "description": "why refused or failed: status, code, message"},
        "source": {"type": "string", "enum": [s.value for s in Source]},
        "remote_addr": {"type": ["string", "null"]},
        "request_id": {"type": ["string", "null"]},
    },
}
AUDIT_PATHS = {
    "/api/audit": {
        "get": {
            "summary": "The audit log, newest first: every action from the API, the dashboards and the CLI, and refusals",
            "description": "Always needs a token (read or operate scope), whatever API_READ_AUTH says; `until` is exclusive.",
            "security": BEARER,
            "parameters": _query_parameters(AuditQuery),
            "responses": {
                **_ok("a page of entries", "AuditPage"),
                "400": _error("bad filter or cursor"),
                "401": _error("no or wrong token"),
                "503": _error("database down"),
            },
        }
    },
}
AUDIT_SCHEMAS = {
    "AuditEntry": AUDIT_ENTRY,
    "AuditPage": {
        "type": "object",
        "required": ["entries", "next_cursor"],
        "properties": {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}


def build_document() -> dict:
    trigger_body = TriggerBody.model_json_schema()
    trigger_body.pop("title", None)
    alert_body = AlertActionBody.model_json_schema()
    alert_body.pop("title", None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Forecast job service",
            "version": "1.0.0",
            "description": "Trigger, watch and cancel forecast jobs; read their alerts.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "Run": RUN,
                "Attempt": ATTEMPT,
                "RunAttempts": RUN_ATTEMPTS,
                "Retried": RETRIED,
                "Alert": ALERT,
                "Triggered": {
                    "type": "object",
                    "required": ["job_id", "status", "message"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "job_name": {"type": "string"},
                        "status": {"type": "string"},
                        "message": {"type": "string"},
                        "waits_for": {"type": "string"},
                    },
                },
                "Canceled": {
                    "type": "object",
                    "required": ["job_id", "status"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "status": {"type": "string", "enum": ["canceled", "stopping"]},
                        "message": {"type": "string"},
                    },
                },
                "RunPage": {
                    "type": "object",
                    "required": ["runs", "next_cursor"],
                    "properties": {
                        "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "RunListPage": {
                    "type": "object",
                    "required": ["runs", "next_cursor", "total", "total_capped"],
                    "properties": {
                        "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                        "next_cursor": {"type": ["string", "null"]},
                        "total": {"type": "integer", "minimum": 0, "description": "matching runs, at most 1000"},
                        "total_capped": {"type": "boolean", "description": "more than 1000 runs match"},
                    },
                },
                "AlertPage": {
                    "type": "object",
                    "required": ["alerts", "next_cursor"],
                    "properties": {
                        "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "Object": {"type": "object"},
                "Report": REPORT,
                "ReportPage": {
                    "type": "object",
                    "required": ["reports", "next_cursor"],
                    "properties": {
                        "reports": {"type": "array", "items": {"$ref": "#/components/schemas/Report"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "AccuracyRun": ACCURACY_RUN,
                "AccuracyPage": {
                    "type": "object",
                    "required": ["runs"],
                    "properties": {
                        "line": {"type": ["string", "null"]},
                        "runs": {"type": "array", "items": {"$ref": "#/components/schemas/AccuracyRun"}},
                    },
                },
                "Schedule": SCHEDULE,
                "ScheduleList": {
                    "type": "object",
                    "required": ["schedules"],
                    "properties": {"schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}},
                },
                **AUDIT_SCHEMAS,
            },
        },
        "paths": {
            "/api/jobs": {
                "get": {
                    "summary": "The job catalogue",
                    "security": READ,
                    "responses": {**_ok("jobs", "Object"), "401": _error("no or wrong token")},
                }
            },
            "/api/jobs/{job_name}/trigger": {
                "post": {
                    "summary": "Trigger a run",
                    "security": BEARER,
                    "parameters": [JOB_NAME],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": trigger_body}}},
                    "responses": {
                        **_ok("queued", "Triggered", "202"),
                        "400": _error("bad body"),
                        "401": _error("no or wrong token"),
                        "403": _error("the token has the read scope only"),
                        "404": _error("unknown job"),
                        "409": _error("a run is queued or running"),
                        "413": _error("body too large"),
                        "503": _error("Redis or database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/history": {
                "get": {
                    "summary": "Runs, newest first",
                    "security": READ,
                    "parameters": [JOB_NAME, *_query_parameters(HistoryQuery)],
                    "responses": {
                        **_ok("a page of runs", "RunPage"),
                        "400": _error("bad filter or cursor"),
                        "401": _error("no or wrong token"),
                        "404": _error("unknown job"),
                        "503": _error("database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/{run_id}": {
                "get": {
                    "summary": "Run status",
                    "security": READ,
                    "parameters": [JOB_NAME, RUN_ID],
                    "responses": {
                        **_ok("the run", "Run"),
                        "400": _error("invalid id"),
                        "401": _error("no or wrong token"),
                        "404": _error("unknown job or run"),
                        "503": _error("database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/{run_id}/cancel": {
                "post": {
                    "summary": "Cancel a queued run or stop a running one",
                    "security": BEARER,
                    "parameters": [JOB_NAME, RUN_ID],
                    "responses": {
                        **_ok("canceled", "Canceled"),
                        **_ok("stop requested", "Canceled", "202"),
                        "400": _error("invalid id"),
                        "401": _error("no or wrong token"),
                        "403": _error("the token has the read scope only"),
                        "404": _error("unknown job or run"),
                        "409": _error("already ended"),
                        "503": _error("Redis or database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/{run_id}/attempts": {
                "get": {
                    "summary": "A run with every attempt (worker, times, error, traceback) and its retry links",
                    "security": READ,
                    "parameters": [JOB_NAME, RUN_ID],
                    "responses": {
                        **_ok("the run and its attempts", "RunAttempts"),
                        "400": _error("invalid id"),
                        "401": _error("no or wrong token"),
                        "404": _error("unknown job or run"),
                        "503": _error("database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/{run_id}/retry": {
                "post": {
                    "summary": "Retry an ended, unsuccessful run as a new run linked to it",
                    "security": BEARER,
                    "parameters": [JOB_NAME, RUN_ID],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": trigger_body}}},
                    "responses": {
                        **_ok("the retry is queued", "Retried", "202"),
                        "400": _error("invalid id or body"),
                        "401": _error("no or wrong token"),
                        "404": _error("unknown job or run"),
                        "409": _error("the run has not ended, or finished; or a run of the job is queued or running"),
                        "413": _error("body too large"),
                        "503": _error("Redis or database down"),
                    },
                }
            },
            "/api/jobs/{job_name}/retry-failed": {
                "post": {
                    "summary": "Retry the newest failed run since a time (one new run answers for all failures)",
                    "security": BEARER,
                    "parameters": [JOB_NAME, *_query_parameters(RetryFailedQuery)],
                    "requestBody": {"required": False, "content": {"application/json": {"schema": trigger_body}}},
                    "responses": {
                        **_ok("nothing new queued: no failure, or its retry exists", "Retried"),
                        **_ok("the retry is queued", "Retried", "202"),
                        "400": _error("missing or bad since, or bad body"),
                        "401": _error("no or wrong token"),
                        "404": _error("unknown job"),
                        "409": _error("a run of the job is queued or running"),
                        "413": _error("body too large"),
                        "503": _error("Redis or database down"),
                    },
                }
            },
            "/api/jobs/stats": {
                "get": {
                    "summary": "Workers, queues, tasks, schedules and last-24 h figures",
                    "security": READ,
                    "responses": {
                        **_ok("stats", "Object"),
                        "401": _error("no or wrong token"),
                        "503": _error("Redis or database down"),
                    },
                }
            },
            "/api/alerts": {
                "get": {
                    "summary": "Alerts, newest first",
                    "security": READ,
                    "parameters": _query_parameters(AlertQuery),
                    "responses": {
                        **_ok("a page of alerts", "AlertPage"),
                        "400": _error("bad filter or cursor"),
                        "401": _error("no or wrong token"),
                        "503": _error("database down"),
                    },
                }
            },
            **RUN_LIST_PATHS,
            "/api/alerts/{alert_id}": {
                "get": {
                    "summary": "One alert with its sightings (the runs that saw it), newest first",
                    "security": READ,
                    "parameters": [ALERT_ID],
                    "responses": {
                        **_ok("the alert and its sightings", "Alert"),
                        "401": _error("no or wrong token"),
                        "404": _error("no such alert"),
                        "503": _error("database down"),
                    },
                }
            },
            "/api/alerts/{alert_id}/acknowledge": _alert_action(
                "Acknowledge an open alert (someone is on it; still open, not notified again)", alert_body
            ),
            "/api/alerts/{alert_id}/resolve": _alert_action(
                "Resolve an alert (closed; its condition seen again opens and notifies a new alert)", alert_body
            ),
            **SCHEDULE_PATHS,
            **REPORT_PATHS,
            **FORECAST_PATHS,
            **TREND_PATHS,
            **AUDIT_PATHS,
            "/api/": {
                "get": {
                    "summary": "This API's index: every route with its methods, links to this document and its viewer",
                    "security": [],
                    "responses": _ok("the index", "Object"),
                }
            },
            "/api/docs": {
                "get": {
                    "summary": "The OpenAPI viewer (Swagger UI, served from this service)",
                    "security": [],
                    "responses": {"200": {"description": "an HTML page", "content": {"text/html": {}}}},
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": _ok("alive", "Object")}},
            "/api/health/summary": {
                "get": {
                    "summary": "What is wrong now, one line per problem (the dashboard's health strip)",
                    "security": READ,
                    "responses": {**_ok("the summary", "Object"), "401": _error("no or wrong token")},
                }
            },
            "/api/health/events": {
                "get": {
                    "summary": "The newest operational events and their webhook deliveries",
                    "security": READ,
                    "parameters": [
                        {
                            "name": "kind",
                            "in": "query",
                            "schema": {"type": "string", "enum": [k.value for k in EventKind]},
                        },
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                    ],
                    "responses": {
                        **_ok("events", "Object"),
                        "400": _error("bad kind or limit"),
                        "401": _error("no or wrong token"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis and database",
                    "security": [],
                    "responses": {**_ok("ready", "Object"), "503": {"description": "not ready"}},
                }
            },
        },
    }


@bp.get("/api/openapi.json")
def openapi_document():
    return jsonify(build_document())
