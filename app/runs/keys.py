"""The run lifecycle's Redis protocol: every key and Lua script it uses, defined once.

Whoever takes, renews or frees a lock goes through these names, so one module owns the
format of each key and the one "release if owner" script (also used by the scheduler's lock).
"""

from __future__ import annotations

from redis import Redis

# The run that is queued or running, per job name (the overlap lock).
ACTIVE_KEY = "forecast-service:active:{job_name}"
PENDING_TTL = 60  # a lock taken by an enqueuer that died before enqueuing frees itself
# Which attempt a worker's work-horse took, by worker name, for the worker's own failure record.
ATTEMPT_KEY = "forecast-service:attempt:{run_id}"
ATTEMPT_KEY_TTL = 7 * 24 * 3600
# A stop asked for through the API: a later attempt of the run (its worker died before it could
# stop it, and the run was found abandoned and retried) stops at once instead of executing.
STOP_KEY = "forecast-service:stop:{run_id}"
# The forecast run whose fan-out is the latest one.
FANOUT_KEY = "forecast-service:fanout:forecast"

# Take the lock unless held; return the holder and its TTL (-1: confirmed) when held.
TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {holder, redis.call('TTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
# Hand the lock from the holder read (ARGV[1]) to a new run, pending again.
SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1
end
return 0
"""
# The run reached its queue: its lock no longer expires.
CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PERSIST', KEYS[1]) end
return 0
"""
# Free a key only if ARGV[1] still holds it.
RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Renew the lease of every key ARGV[1] still holds.
HOLD = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('EXPIRE', key, ARGV[2]) end
end
return 0
"""


def active_key(job_name: str) -> str:
    return ACTIVE_KEY.format(job_name=job_name)


def attempt_key(run_id: str) -> str:
    return ATTEMPT_KEY.format(run_id=run_id)


def stop_key(run_id: str) -> str:
    return STOP_KEY.format(run_id=run_id)


def release_if_owner(redis: Redis, key: str, owner: str) -> bool:
    """Delete `key` only if `owner` still holds it (True: deleted)."""
    return bool(redis.eval(RELEASE_IF_OWNER, 1, key, owner))
