"""The Lua scripts a node runs in Redis, each atomic: publishes with their offsets and
history streams, topic positions, the heartbeat, and the presence ledger.

A node refers to a script by its SHA1; :meth:`~snorky.brokers.redis.link.Link.run_scripts`
loads them all again when Redis has forgotten them (a restart).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BEAT",
    "POSITION",
    "PRESENCE_ADD",
    "PRESENCE_COUNT",
    "PRESENCE_LIST",
    "PRESENCE_REFRESH",
    "PRESENCE_REMOVE",
    "PUBLISH_BATCH",
    "READ_HISTORY",
    "READ_POSITION",
    "SCRIPTS",
    "SHAS",
]

POSITION = re.compile(rb',"offset":(\d+),"epoch":"([0-9a-f]+)"\}\}$')
"""The position :data:`PUBLISH_BATCH` adds at the end of a history topic's message."""

_REDIS_NOW = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""

PUBLISH_BATCH = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = tonumber(ARGV[1])
local count = (#KEYS - 1) / 2
local fresh = 0
local epochs, offsets, ttls, streams = {}, {}, {}, {}
for i = 1, count do
  if first + i - 1 > last then
    local meta, stream, a = KEYS[2 * i], KEYS[2 * i + 1], 4 + (i - 1) * 5
    local channel, size, ttl, tag, data = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
    local epoch = epochs[meta]
    if not epoch then
      local position = redis.call('HMGET', meta, 'e', 'o')
      epoch = position[1]
      if not epoch then
        epoch = ARGV[3]
      end
      epochs[meta], offsets[meta] = epoch, tonumber(position[2] or '0')
    end
    local offset = offsets[meta] + 1
    offsets[meta], ttls[meta] = offset, ttl
    if size > 0 then
      local payload = string.sub(data, 1, -3) .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}}'
      redis.call('XADD', stream, 'MAXLEN', size, offset .. '-0', 't', ARGV[2], 'd', payload)
      streams[stream] = ttl
      redis.call('PUBLISH', channel, tag .. payload)
    else
      redis.call('PUBLISH', channel, '\\2' .. epoch .. '\\0' .. offset .. '\\0' .. tag .. data)
    end
    fresh = fresh + 1
  end
end
for meta, offset in pairs(offsets) do
  redis.call('HSET', meta, 'e', epochs[meta], 'o', offset)
  redis.call('PEXPIRE', meta, ttls[meta])
end
for stream, ttl in pairs(streams) do
  redis.call('PEXPIRE', stream, ttl)
end
if first + count - 1 > last then
  redis.call('SET', KEYS[1], first + count - 1, 'PX', ARGV[4])
end
return fresh
"""
"""KEYS: the node's publish mark, then (meta, stream) per message. ARGV: the first
sequence number, the time (ms), an epoch for new topics, the mark's ttl (ms), then
(channel, history size or 0, ttl ms, tag, data) per message. Returns how many
messages were new (the others had run already)."""

READ_HISTORY = """
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
end
local top = tonumber(redis.call('HGET', KEYS[2], 'o'))
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
elseif redis.call('PTTL', KEYS[2]) < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local since = tonumber(ARGV[3])
local entries = {}
if since >= 0 and since < top then
  entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+')
end
return {epoch, top, entries}
"""

READ_POSITION = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  return {'', 0, {}}
end
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[1])
if epoch ~= ARGV[2] then
  since = 0
end
local entries = {}
if ARGV[3] == '1' and since < top then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+')
end
return {epoch, top, entries}
"""
"""A topic's position without changing anything: KEYS meta, stream; ARGV the offset
and epoch this node has, and whether to read the stream after it."""

BEAT = (
    """
redis.replicate_commands()
"""
    + _REDIS_NOW
    + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - 86400)
local receivers = redis.call('PUBLISH', ARGV[4], 'beat')
if ARGV[3] == '1' and receivers > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 86400000)
end
return receivers
"""
)
"""KEYS nodes, listening; ARGV node, its time (s), whether it listens to all its topics,
its channel. Publishes the heartbeat to the node itself and returns how many
connections got it; marks the node listening (in Redis's time, which every node
compares with) only if Redis sees a subscription to its channel."""

_SWEEP_EXPIRED = """
local gone = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  local value = redis.call('HGET', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  if value and redis.call('HDEL', KEYS[1], member) == 1 then
    local token = string.match(value, '^([^%z]*)%z')
    if token then
      redis.call('ZADD', KEYS[3], ARGV[1], member .. '\\0' .. token)
    end
    table.insert(gone, member)
    table.insert(gone, value)
  end
end
"""
"""Removes the expired entries of a presence key, leaves their tombstones, and
collects them in ``gone``; ARGV[1] is the time (ms)."""

_TRIM_TOMBSTONES = """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[3], ARGV[2])
"""
"""Tombstones are kept ARGV[2] ms. Every presence script takes ARGV[1] the time (ms),
ARGV[2] how long tombstones are kept and ARGV[3] how long entries are kept (ms)."""

PRESENCE_ADD = """
if redis.call('ZSCORE', KEYS[3], ARGV[4] .. '\\0' .. ARGV[5]) then
  return -1
end
local current = redis.call('HGET', KEYS[1], ARGV[4])
if ARGV[7] == '1' and current and string.sub(current, 1, #ARGV[5] + 1) ~= ARGV[5] .. '\\0' then
  local expires = redis.call('ZSCORE', KEYS[2], ARGV[4])
  if expires and tonumber(expires) > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5] .. '\\0' .. ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
"""KEYS entries, expiries, tombstones; ARGV (1-3 as above) member, token, info, only
if absent, expiry (ms). 1 added, 0 held by another, -1 this write was undone."""

PRESENCE_REMOVE = (
    """
local tombstone = ARGV[4] .. '\\0' .. ARGV[5]
if redis.call('ZSCORE', KEYS[3], tombstone) then
  return -1
end
redis.call('ZADD', KEYS[3], ARGV[1], tombstone)
"""
    + _TRIM_TOMBSTONES
    + """
local current = redis.call('HGET', KEYS[1], ARGV[4])
if current and string.sub(current, 1, #ARGV[5] + 1) == ARGV[5] .. '\\0' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  return redis.call('HDEL', KEYS[1], ARGV[4])
end
return 0
"""
)
"""KEYS as above; ARGV (1-3) member, token: removes the entry if that write made it,
and leaves a tombstone of the write. 1 removed; 0 not there (never written, or
Redis lost it); -1 removed before, as expired (and reported then)."""

PRESENCE_REFRESH = (
    """
local refused = {}
for i = 5, #ARGV, 3 do
  local member, token = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], member)
  if redis.call('ZSCORE', KEYS[3], member .. '\\0' .. token) then
    table.insert(refused, member)
  elseif current and string.sub(current, 1, #token + 1) ~= token .. '\\0' then
    table.insert(refused, member)
  else
    redis.call('HSET', KEYS[1], member, token .. '\\0' .. ARGV[i + 2])
    redis.call('ZADD', KEYS[2], ARGV[4], member)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
"""
    + _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
if #gone > 0 then
  return {gone, redis.call('HGETALL', KEYS[1]), refused}
end
return {gone, {}, refused}
"""
)
"""KEYS as above; ARGV (1-3), the expiry, then (member, token, info) per owned entry.
Entries this node still owns are written again (also after Redis lost them); those
whose token has a tombstone (someone removed them as expired) or that another
holds are refused. Then expired entries are removed (``gone``)."""

PRESENCE_LIST = (
    _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
return {gone, redis.call('HGETALL', KEYS[1])}
"""
)

PRESENCE_COUNT = (
    _SWEEP_EXPIRED
    + _TRIM_TOMBSTONES
    + """
return {gone, redis.call('HLEN', KEYS[1])}
"""
)

SCRIPTS = (
    PUBLISH_BATCH,
    READ_HISTORY,
    READ_POSITION,
    BEAT,
    PRESENCE_ADD,
    PRESENCE_REMOVE,
    PRESENCE_REFRESH,
    PRESENCE_LIST,
    PRESENCE_COUNT,
)
SHAS = {source: hashlib.sha1(source.encode()).hexdigest() for source in SCRIPTS}
