"""RedisBroker: several Snorky processes behind a load balancer behave as one server.

Install with ``pip install snorky[redis]`` and configure ``broker = "redis://host:6379/0"``
(or ``redis+sentinel://host:26379/mymaster``). Every node publishes to Redis
and every node subscribed to a topic receives it, in the order Redis received
the publishes. History streams, presence and key-value entries live in Redis.

What a node promises under faults, and how it keeps it
(``docs/howto/scale-with-redis.rst`` is the user's side of it):

- **A publish is answered within ``timeout`` seconds**: ``ok`` once Redis has it, or
  once the node holds it in its queue because Redis does not answer (it is sent when
  Redis is back), or :class:`~snorky.errors.BrokerUnavailable` when the queue is full
  (it is never sent).
- **Once, never twice.** Every publish carries an id, the node's incarnation and a
  sequence number. Publishes go to Redis in batches, each one script that skips the
  ids Redis already ran: a batch sent again after a timeout (Redis paused, not dead)
  adds no second stream entry and no second delivery (:class:`~snorky.brokers.redis.publisher.Outbox`).
- **Counted, never silently lost.** Every message of a topic gets the next offset
  of the topic (history topics show it to clients; the others carry it in a header
  that is stripped before delivery). When a node rebuilds its subscription, it reads
  each topic's position behind a *fence* (a message to itself through Redis, which
  arrives after every message published before the read), delivers what history
  streams still hold, and counts the rest as missed; services then tell their
  clients (a ``gap`` push) (:mod:`~snorky.brokers.redis.subscriber`).
- **Queued publishes wait for listeners.** After an outage a node sends its queue
  once its own subscription is back and every other live node has marked itself
  listening again (for at most ``timeout`` seconds), so a Redis restart loses no
  queued publish.
- **Presence follows ownership** (:mod:`~snorky.brokers.redis.presence`). A node refreshes only
  the entries it owns, writes each entry with a token and orders the writes to one
  entry; a removal leaves a tombstone of the token, so a write that arrives late
  (Redis paused) cannot bring the entry back. Entries that nobody refreshes (their
  node died, or was paused) expire after ``presence_ttl``; whoever removes an expired
  entry reports it, once, and a paused node that finds its entries gone adds them
  again and reports them restored.
- **One outage, two log lines** (:class:`~snorky.brokers.redis.link.Outage`): when it begins, and when it ends
  with what it cost (publishes queued and refused, messages missed); each is
  counted once in :meth:`RedisBroker.stats`.

The node's parts, one module each: :mod:`~snorky.brokers.redis.link` (the connection,
the scripts runner, outages), :mod:`~snorky.brokers.redis.scripts` (the Lua scripts),
:mod:`~snorky.brokers.redis.publisher`, :mod:`~snorky.brokers.redis.subscriber`,
:mod:`~snorky.brokers.redis.presence`, :mod:`~snorky.brokers.redis.heartbeat`, and
:mod:`~snorky.brokers.redis.broker`, whose :class:`RedisBroker` composes them.
"""

try:
    import redis  # noqa: F401 - only to check that the extra is installed
except ImportError as error:  # pragma: no cover - depends on the extra
    raise ImportError("RedisBroker needs redis-py: pip install 'snorky[redis]'") from error

from snorky.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
