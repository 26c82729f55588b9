"""The service layer: what the service does, written once for the API, the dashboard and the CLI.

Its modules import no Flask, click or RQ-worker code; they raise domain exceptions that each
adapter maps to its own responses. `catalog` is the one list of jobs every layer reads.
"""
