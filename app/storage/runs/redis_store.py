"""Runs in Redis, shared by every worker of every machine that points at the same database.

Keys (all under `prefix`, default "cnn-explorer:"):
    run:<run_id>    hash {"net": the network's key, "data": the run blob,
                          "grad:<target>:<loss>": a gradients blob, for each kept}  (blobs.py)
    net:<sha256>    the network blob, shared by the runs made with it
    lru             sorted set: every run and network key, scored by last use (Redis TIME in
                    microseconds, made strictly increasing by `clock`)
    sizes           hash: key -> blob bytes;  bytes: their sum

Every change is one Lua script, so workers on several machines see one consistent store:
- Bounded by age: run and network keys carry a TTL (PEXPIRE), renewed on every use; Redis drops
  them by itself. Index entries older than the TTL are removed at the next put.
- Bounded by bytes: a put drops the least recently used keys (by the sorted set) until the new
  run and, if Redis lacks it, its network fit in max_bytes of blobs. A get renews the network with
  the run, so a network is dropped only after its runs. Redis adds ~100 bytes per key on top.
- A run's gradients are fields of its hash: its size in `sizes` counts them, putting or getting
  them renews the run, and they go with the run's key whichever way it goes (evicted, expired,
  deleted, replaced, or dropped by maxmemory), so none outlive their run.
- Redis's own `maxmemory` is a safety net, not the bound: configure `volatile-lru` (or
  `volatile-ttl`) so that it can only ever drop run and network keys, never the index (which has
  no TTL); a run whose key Redis dropped is then a 404 and its index entry is cleaned up.
Each process keeps the runs it read lately (blobs.RecentRuns), so the many requests for one
run's images each cost one renewal round trip, not the whole run; Redis still decides whether the
run is kept. Run ids are 64 random bits and never rewritten, so a run kept there is current.
Not for Redis Cluster: the scripts touch keys they read from other keys.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import redis

from app.cnn import Network
from app.cnn.backprop import Gradients
from app.errors import AppError
from app.storage.runs.blobs import (
    BlobError,
    NetworkCache,
    NetworkKeys,
    RecentGradients,
    RecentRuns,
    decode_gradients,
    decode_network,
    decode_run,
    encode_for_store,
    encode_gradients,
)
from app.storage.runs.memory import RUN_ID, Run, run_not_found

log = logging.getLogger("cnn_explorer")

_PRELUDE = """
local lru, sizes, total_key, clock = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function int(n) return string.format('%d', n) end
-- Microseconds of Redis TIME, made strictly increasing so that uses order exactly.
local function tick()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', clock) or '0')
  if now <= last then now = last + 1 end
  redis.call('SET', clock, int(now))
  return now
end
local function forget(key)
  redis.call('DEL', key)
  local size = redis.call('HGET', sizes, key)
  if size then
    redis.call('DECRBY', total_key, size)
    redis.call('HDEL', sizes, key)
  end
  redis.call('ZREM', lru, key)
end
local function expire_old(now, ttl_ms)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', lru, '-inf', '(' .. int(now - ttl_ms * 1000))) do
    forget(key)
  end
end
"""

# KEYS: index (lru, sizes, bytes, clock), run key, network key. ARGV: ttl ms, max bytes, run blob,
# network blob or "" (then 0 is returned if Redis lacks the network: call again with it). 1: kept.
_PUT = (
    _PRELUDE
    + """
local ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local run_key, net_key, run_blob, net_blob = KEYS[5], KEYS[6], ARGV[3], ARGV[4]
local now = tick()
expire_old(now, ttl)
local have_net = redis.call('EXISTS', net_key) == 1
if not have_net then
  forget(net_key)
  if net_blob == '' then return 0 end
end
forget(run_key)
redis.call('ZADD', lru, int(now), net_key)
local incoming = #run_blob
if not have_net then incoming = incoming + #net_blob end
local total = tonumber(redis.call('GET', total_key) or '0')
while total + incoming > max do
  local oldest = redis.call('ZRANGE', lru, 0, 1)
  local victim = oldest[1]
  if victim == net_key then victim = oldest[2] end
  if not victim then break end
  forget(victim)
  total = tonumber(redis.call('GET', total_key) or '0')
end
if have_net then
  redis.call('PEXPIRE', net_key, ttl)
else
  redis.call('SET', net_key, net_blob, 'PX', ttl)
  redis.call('HSET', sizes, net_key, #net_blob)
  redis.call('INCRBY', total_key, #net_blob)
end
redis.call('HSET', run_key, 'net', net_key, 'data', run_blob)
redis.call('PEXPIRE', run_key, ttl)
redis.call('ZADD', lru, int(tick()), run_key)
redis.call('ZADD', lru, int(tick()), net_key)
redis.call('HSET', sizes, run_key, #run_blob)
redis.call('INCRBY', total_key, #run_blob)
return 1
"""
)

# KEYS: index, run key. ARGV: ttl ms, "1" to get the run's blob. Renews the run and its network;
# returns {network key} or {network key, run blob}, or nil when either is gone.
_GET = (
    _PRELUDE
    + """
local ttl, run_key = tonumber(ARGV[1]), KEYS[5]
local net_key = redis.call('HGET', run_key, 'net')
if not net_key then forget(run_key) return false end
if redis.call('PEXPIRE', net_key, ttl) == 0 then
  forget(run_key)
  forget(net_key)
  return false
end
redis.call('PEXPIRE', run_key, ttl)
-- the network after its run: it must outlast every run that needs it
redis.call('ZADD', lru, int(tick()), run_key)
redis.call('ZADD', lru, int(tick()), net_key)
if ARGV[2] == '1' then return {net_key, redis.call('HGET', run_key, 'data')} end
return {net_key}
"""
)

# KEYS: index, run key. ARGV: ttl ms, max bytes, field, gradients blob. Adds the blob to the run's
# hash, dropping the least recently used other runs (never this run or its network) until it fits.
# 1: kept; 0: not (the run is gone, or it does not fit beside its run).
_PUT_GRADIENTS = (
    _PRELUDE
    + """
local ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local run_key, field, blob = KEYS[5], ARGV[3], ARGV[4]
expire_old(tick(), ttl)
local net_key = redis.call('HGET', run_key, 'net')
if not net_key then forget(run_key) return 0 end
if redis.call('EXISTS', net_key) == 0 then forget(run_key) forget(net_key) return 0 end
-- a use of the run: it and its network become the most recently used, the last to go
redis.call('ZADD', lru, int(tick()), run_key)
redis.call('ZADD', lru, int(tick()), net_key)
local incoming = #blob - redis.call('HSTRLEN', run_key, field)
local own = tonumber(redis.call('HGET', sizes, run_key) or '0')
own = own + tonumber(redis.call('HGET', sizes, net_key) or '0')
if own + incoming > max then return 0 end -- it does not fit beside its run: drop nothing for it
local total = tonumber(redis.call('GET', total_key) or '0')
while total + incoming > max do
  local victim = redis.call('ZRANGE', lru, 0, 0)[1]
  if not victim or victim == run_key then break end
  forget(victim)
  total = tonumber(redis.call('GET', total_key) or '0')
end
if total + incoming > max then return 0 end
redis.call('HSET', run_key, field, blob)
redis.call('HINCRBY', sizes, run_key, incoming)
redis.call('INCRBY', total_key, incoming)
redis.call('PEXPIRE', run_key, ttl)
redis.call('PEXPIRE', net_key, ttl)
return 1
"""
)

# KEYS: index, run key. ARGV: ttl ms, field, "1" to get the blob. Renews the run and its network
# when the run has the field; returns 1 or the blob, or nil when the run or the field is gone.
_GET_GRADIENTS = (
    _PRELUDE
    + """
local ttl, run_key, field = tonumber(ARGV[1]), KEYS[5], ARGV[2]
local net_key = redis.call('HGET', run_key, 'net')
if not net_key then forget(run_key) return false end
if redis.call('HEXISTS', run_key, field) == 0 then return false end
if redis.call('PEXPIRE', net_key, ttl) == 0 then
  forget(run_key)
  forget(net_key)
  return false
end
redis.call('PEXPIRE', run_key, ttl)
redis.call('ZADD', lru, int(tick()), run_key)
redis.call('ZADD', lru, int(tick()), net_key)
if ARGV[3] == '1' then return redis.call('HGET', run_key, field) end
return 1
"""
)

# KEYS: index. ARGV: ttl ms, run key prefix. Returns {live runs, live bytes}.
_STATS = (
    _PRELUDE
    + """
expire_old(tick(), tonumber(ARGV[1]))
local runs = 0
for _, key in ipairs(redis.call('ZRANGE', lru, 0, -1)) do
  if string.sub(key, 1, #ARGV[2]) == ARGV[2] then runs = runs + 1 end
end
return {runs, tonumber(redis.call('GET', total_key) or '0')}
"""
)

# KEYS: index, run key.
_DELETE = _PRELUDE + "forget(KEYS[5]) return 1"


def _gradient_field(target: int, loss: str) -> str:
    """The field of a run's hash that holds its gradients for target and loss."""
    return f"grad:{int(target)}:{loss}"


def redis_address(url: str) -> str:
    """redis://user:secret@host:6379/0 -> "host:6379/0" (no credentials in logs or messages)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


class RunStoreUnavailableError(AppError):
    """The shared run store does not answer (503): a server problem, not the client's."""

    status_code = 503


class RedisRunStore:
    """Runs in the Redis database at url, bounded by max_bytes of blobs and by ttl_seconds."""

    def __init__(
        self,
        url: str,
        max_bytes: int,
        ttl_seconds: float,
        prefix: str = "cnn-explorer:",
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._index = [f"{prefix}{name}" for name in ("lru", "sizes", "bytes", "clock")]
        self._put = self._client.register_script(_PUT)
        self._get = self._client.register_script(_GET)
        self._stats = self._client.register_script(_STATS)
        self._delete = self._client.register_script(_DELETE)
        self._put_gradients = self._client.register_script(_PUT_GRADIENTS)
        self._get_gradients = self._client.register_script(_GET_GRADIENTS)
        self._keys = NetworkKeys()
        self._cache = NetworkCache()
        self._recent = RecentRuns()
        self._recent_gradients = RecentGradients()

    def __repr__(self) -> str:
        return f"RedisRunStore({redis_address(self.url)!r}, prefix={self.prefix!r})"

    # -- the RunStore interface ----------------------------------------------------------------
    def put(self, run: Run) -> None:
        key, network_blob, blob = encode_for_store(self._keys, run, time.time(), self.max_bytes)
        run_blob = blob.to_bytes()
        with self._unavailable_as_503():
            keys = [*self._index, self._run_key(run.run_id), self._network_key(key)]
            args = [self._ttl_ms, self.max_bytes, run_blob]
            if not self._put(keys, [*args, b""]):  # Redis lacks the network: send it too
                self._put(keys, [*args, network_blob.to_bytes()])
        self._cache.put(self._network_key(key), run.network)
        self._recent.put(run.run_id, None, self._network_key(key), run, len(run_blob))

    def get(self, run_id: str) -> Run:
        if not RUN_ID.match(run_id):
            raise run_not_found(run_id, self.ttl_seconds)
        with self._unavailable_as_503():
            recent = self._recent.get(run_id, version=None)
            want = "0" if recent is not None else "1"
            found = self._get([*self._index, self._run_key(run_id)], [self._ttl_ms, want])
            if found is None:
                self._recent.discard(run_id)
                self._recent_gradients.discard_run(run_id)
                raise run_not_found(run_id, self.ttl_seconds)
            if recent is not None:
                return recent[1]
            network_key, data = found[0].decode(), found[1]
            try:
                run = decode_run(data, lambda _: self._network(network_key, run_id))
            except (BlobError, KeyError) as e:
                log.warning("run %s in %r is unreadable: %s", run_id, self, e)
                raise run_not_found(run_id, self.ttl_seconds) from None
            self._recent.put(run_id, None, network_key, run, len(data))
            return run

    def delete(self, run_id: str) -> None:
        if RUN_ID.match(run_id):
            self._recent.discard(run_id)
            self._recent_gradients.discard_run(run_id)
            with self._unavailable_as_503():
                self._delete([*self._index, self._run_key(run_id)])

    def put_gradients(self, run_id: str, grads: Gradients) -> bool:
        if not RUN_ID.match(run_id):
            return False
        blob = encode_gradients(grads)
        if blob.nbytes > self.max_bytes:
            return False
        data = blob.to_bytes()
        keys = [*self._index, self._run_key(run_id)]
        field = _gradient_field(grads.target, grads.loss)
        try:
            kept = self._put_gradients(keys, [self._ttl_ms, self.max_bytes, field, data])
        except redis.exceptions.RedisError as e:  # down, or out of memory: computed, not kept
            log.error("gradients of run %s not kept in %r: %s", run_id, self, e)
            return False
        if kept:
            key = (run_id, grads.target, grads.loss)
            self._recent_gradients.put(key, None, grads, len(data))
        return bool(kept)

    def get_gradients(self, run_id: str, target: int, loss: str) -> Gradients | None:
        if not RUN_ID.match(run_id):
            return None
        key = (run_id, target, loss)
        with self._unavailable_as_503():
            recent = self._recent_gradients.get(key, version=None)
            args = [self._ttl_ms, _gradient_field(target, loss), "0" if recent else "1"]
            found = self._get_gradients([*self._index, self._run_key(run_id)], args)
        if found is None:
            self._recent_gradients.discard_run(run_id)
            return None
        if recent is not None:
            return recent
        try:
            grads = decode_gradients(found)
        except (BlobError, KeyError, TypeError) as e:
            log.warning("gradients of run %s in %r are unreadable: %s", run_id, self, e)
            return None
        self._recent_gradients.put(key, None, grads, len(found))
        return grads

    def __len__(self) -> int:
        return int(self._stats_now()[0])

    @property
    def nbytes(self) -> int:
        """Bytes of every live run, gradients and network blob."""
        return int(self._stats_now()[1])

    def close(self) -> None:
        self._client.close()

    def ping(self) -> None:
        """Raise RunStoreUnavailableError unless Redis answers."""
        with self._unavailable_as_503():
            self._client.ping()

    # -- keys and connection -------------------------------------------------------------------
    def _run_key(self, run_id: str) -> str:
        return f"{self.prefix}run:{run_id}"

    def _network_key(self, key: str) -> str:
        return f"{self.prefix}net:{key}"

    def _network(self, network_key: str, run_id: str) -> Network:
        network = self._cache.get(network_key)
        if network is None:
            data = self._client.get(network_key)
            if data is None:  # dropped since the run was read
                raise run_not_found(run_id, self.ttl_seconds)
            network = decode_network(data)
            self._cache.put(network_key, network)
        return network

    def _stats_now(self) -> list[int]:
        with self._unavailable_as_503():
            return self._stats(self._index, [self._ttl_ms, f"{self.prefix}run:"])

    @contextlib.contextmanager
    def _unavailable_as_503(self) -> Iterator[None]:
        """Redis connection problems as a 503 naming the server (not its password)."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            log.error("run store %r: %s", self, e)
            raise RunStoreUnavailableError(
                f"The run store (Redis at {redis_address(self.url)}) does not answer, so runs "
                "cannot be kept or read just now; try again in a minute."
            ) from e
