"""The service layer: what the service does, written once for the API, the dashboard and the CLI.

- `catalog`: the one list of jobs, their queues and default crons, which every layer reads;
- `jobs`: name a job, trigger, look up, cancel or stop a run;
- `schedules`: list, pause, resume, run now;
- `reports`: the stored daily reports;
- `errors`: the domain exceptions those raise.

Its modules import no Flask, click or RQ-worker code (tests/test_layering.py checks it); each
adapter (app/api, dashboard/views.py, app/cli_ops.py) maps the domain errors to its own
responses with one table.
"""
