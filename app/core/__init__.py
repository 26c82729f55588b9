"""The service layer: what the service does, written once for the API, the dashboard and the CLI.

- `catalog`: the one list of jobs, their queues and default crons, which every layer reads;
- `jobs`: name a job, trigger, look up, cancel or stop a run;
- `schedules`: list, pause, resume, run now;
- `scheduled`: what the scheduler does with a cron slot: run it, record it missed, reconcile;
- `listings`: a run's status, a job's history and the alerts, keyset-paged (`pagination`);
- `reports`: write the daily report, read the stored ones;
- `maintenance`: the retention cleanup;
- `stats`: the service's figures;
- `errors`: the domain exceptions those raise.

Its modules import no Flask, click or RQ-worker code, and nothing above them (the import-linter
contracts in pyproject.toml; tests/test_layering.py); each adapter (app/api, dashboard/views.py,
app/cli_ops.py, scheduler.py, workers/jobs.py) maps the domain errors to its own answers.
"""
