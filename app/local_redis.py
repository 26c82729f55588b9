"""Helpers for `bin/run-local` (`make run`), reading REDIS_URL the way the service does."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

from app.config import get_settings
from app.connections import redis_connection


def main(command: str) -> int:
    settings = get_settings()
    url = urlparse(settings.redis_url)
    if command == "ping":
        try:
            redis_connection(settings).ping()
            return 0
        except Exception:
            return 1
    if command == "address":
        print(url.hostname or "localhost", url.port or 6379)
    elif command == "requirepass":
        if url.password:
            print(f"--requirepass {url.password}")
    elif command == "banner":
        port = settings.port
        print(f"""
  Forecast job service
  API:        http://localhost:{port}/api/   (docs: http://localhost:{port}/api/docs, OpenAPI: http://localhost:{port}/api/openapi.json)
  Dashboard:  http://localhost:{port}/dashboard/   (rq-dashboard: /dashboard/rq/)
  API token:  {settings.api_token}
  Dashboard:  {settings.dashboard_username} / {settings.dashboard_password}
  Try:        curl -X POST -H "Authorization: Bearer {settings.api_token}" http://localhost:{port}/api/jobs/forecast/trigger
""")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "ping"))
