"""The reference route: bare Flask + gunicorn, one Redis GET per request.

    gunicorn --workers 2 --worker-class gthread --threads 4 --bind 127.0.0.1:PORT bench.bare_app:app

bench/api.py starts it with the web process's worker model (WEB_CONCURRENCY, WEB_WORKER_CLASS,
WEB_THREADS, keep-alive), so both sides of the ratio run on the same server settings.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify
from redis import Redis

app = Flask(__name__)
redis = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.get("/")
def get_value():
    value = redis.get("bench:bare")
    return jsonify(value=value.decode() if value else None)
