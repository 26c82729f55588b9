"""The reference route: bare Flask + gunicorn (2 sync workers), one Redis GET per request.

    gunicorn --workers 2 --bind 127.0.0.1:PORT bench.bare_app:app     (BENCH_REDIS_URL)
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
