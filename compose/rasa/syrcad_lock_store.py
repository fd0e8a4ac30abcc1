"""A Redis lock store for Rasa 3.x whose ticket operations are atomic.

Rasa's stock RedisLockStore issues and returns tickets with get → modify → set on one JSON
value (rasa issue 9213). Two frontends serving the same sender at once can both read the same
ticket list, both believe they hold the lock, and process the sender's messages concurrently:
tracker events get lost. Here each ticket operation is one Lua script, so Redis runs it whole:

- issue:   purge expired tickets, take the next number from a counter, enqueue it;
- acquire: purge expired tickets, answer whether this ticket is first in the queue;
- finish:  drop the ticket, and the whole lock when no ticket is left, in the same step.

Time comes from Redis (TIME), so frontends on different hosts agree on expiry.

A ticket is a lease: issued for LEASE_S and renewed by its frontend while it waits or serves,
up to Rasa's lock lifetime as before. A frontend that dies holding a ticket (kill -9, a lost
host) holds up the sender's next message for at most LEASE_S, not the whole lock lifetime (60 s
by default), which is longer than clients wait.

A replicated Redis (several `redis` hosts) is reached through its Sentinels (keys `sentinels`,
a list of host:port, and `service_name`): each new connection asks them for the primary, so the
store follows a failover, which Rasa's own Redis lock store cannot (rasa issue 3924). Replication
is asynchronous, and a replica promoted before it got the last ISSUE would hand out that ticket
number again: two frontends would serve one sender at once. So with `replicas` set, a ticket is
used only once a replica has it (WAIT); the Sentinels promote the replica that is furthest
along, which then has it. A ticket that a connected replica does not confirm in time is
withdrawn and the message refused (503; the client sends it again). A primary with no replica
connected (the others are lost) goes on alone: no replica holds an older counter that could be
promoted, as the Sentinels promote none that lost its primary for long. The other scripts need
no wait: a renewal or a release lost in a failover only ends a ticket sooner or later (its
lease), never hands it out twice.

A Redis call that gets no answer opens the stores' breaker (syrcad_store_breaker.py, beside
this file): the next turns are refused before they issue a ticket, until every store answers a
probe; this store's is a PING on a connection of its own, made as the store's are. A Sentinel is
asked with the probe's short timeouts: it answers from memory, and one on a lost host would
otherwise hold each new connection for the whole reply timeout before the next is asked.

syrcad mounts this file beside endpoints.yml (on PYTHONPATH), so the official Rasa image loads
it from `lock_store.type: syrcad_lock_store.AtomicRedisLockStore`, with the stock keys: url,
port, db, username, password, use_ssl, key_prefix, socket_timeout; and socket_connect_timeout,
sentinels, service_name, replicas.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Callable, Optional, TypeVar

from rasa.core.lock import Ticket, TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, LockStore
from rasa.utils.endpoints import EndpointConfig
from syrcad_store_breaker import PROBE_TIMEOUT_S, stores

logger = logging.getLogger(__name__)

# How long ISSUE waits for a replica to confirm a ticket; replication takes a millisecond or so.
REPLICATED_WITHIN_MS = 1000

# Longer than the event loop of a busy frontend stays blocked (TensorFlow runs on it), so a live
# holder always renews in time: it renews every third of it.
LEASE_S = 10.0

# Threads for Redis calls. While Redis is away each call holds one for up to its timeouts, and
# under load that is many at once: asyncio's default pool (CPU count + 4) would queue every turn
# behind them, and still be working off that queue seconds after Redis is back. A thread that
# waits on a socket costs little.
REDIS_CALL_THREADS = 64
_redis_calls = ThreadPoolExecutor(REDIS_CALL_THREADS, thread_name_prefix="syrcad-lock-store")

T = TypeVar("T")


async def _in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call` in a Redis thread: a Redis away holds up the turns waiting for it, not the
    frontend's event loop and its health checks."""
    return await asyncio.get_running_loop().run_in_executor(_redis_calls, functools.partial(call, *args, **kwargs))

_PURGE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expiries = redis.call('HGETALL', KEYS[2])
for i = 1, #expiries, 2 do
  if tonumber(expiries[i + 1]) <= now_ms then
    redis.call('ZREM', KEYS[1], expiries[i])
    redis.call('HDEL', KEYS[2], expiries[i])
  end
end
-- Keys outlive every ticket in them; never shorten what another frontend's ticket needs.
local function keep_keys(ms)
  for i = 1, 3 do
    if redis.call('PTTL', KEYS[i]) < ms then redis.call('PEXPIRE', KEYS[i], ms) end
  end
end
"""

# KEYS: queue (zset number→number), expiries (hash number→ms), counter. ARGV: lifetime ms.
ISSUE = _PURGE + """
local number = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], number, number)
redis.call('HSET', KEYS[2], number, now_ms + tonumber(ARGV[1]))
keep_keys(2 * tonumber(ARGV[1]))
return number
"""

# ARGV: ticket number. Returns 1 when it is this ticket's turn, 0 to wait, -1 when it expired.
ACQUIRE = _PURGE + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return -1 end
local first = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if first == ARGV[1] then return 1 end
return 0
"""

# ARGV: ticket number. Returns how many tickets are still waiting.
FINISH = _PURGE + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return left
"""

# ARGV: ticket number, new lifetime ms. Returns 0 when the ticket is gone (expired or finished).
RENEW = _PURGE + """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], now_ms + tonumber(ARGV[2]))
keep_keys(2 * tonumber(ARGV[2]))
return 1
"""

WAITING = _PURGE + "return redis.call('ZCARD', KEYS[1])"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class AtomicRedisLockStore(LockStore):
    """Ticket lock per conversation in Redis, every step atomic."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, **kwargs: Any) -> None:
        import redis

        options = dict(endpoint_config.kwargs) if endpoint_config else {}
        options.update(kwargs)
        host = (endpoint_config.url if endpoint_config else None) or options.pop("host", "localhost")
        timeouts = {
            "socket_timeout": float(options.get("socket_timeout", 10)),
            # Unset, a connect to a host that is gone waits for the kernel's SYN retries (minutes).
            "socket_connect_timeout": float(options.get("socket_connect_timeout", 3)),
        }
        connection = dict(
            db=int(options.get("db", 1)),
            username=options.get("username"),
            password=options.get("password"),
            ssl=bool(options.get("use_ssl", False)),
            **timeouts,
        )
        self.replicas = int(options.get("replicas", 0))
        if options.get("sentinels"):
            from redis.sentinel import Sentinel

            sentinels = [_host_port(address) for address in options["sentinels"]]
            asking = {"socket_timeout": PROBE_TIMEOUT_S, "socket_connect_timeout": PROBE_TIMEOUT_S}
            self.red = Sentinel(sentinels, sentinel_kwargs=asking).master_for(
                str(options["service_name"]), **connection
            )
        else:
            self.red = redis.StrictRedis(host=host, port=int(options.get("port", 6379)), **connection)
        prefix = str(options.get("key_prefix") or "")
        self.key_prefix = (prefix + ":" if prefix.isalnum() else "") + "lock:"
        self._issue = self.red.register_script(ISSUE)
        self._acquire = self.red.register_script(ACQUIRE)
        self._finish = self.red.register_script(FINISH)
        self._renew = self.red.register_script(RENEW)
        self._waiting = self.red.register_script(WAITING)
        stores.watch("lock", self._answers)
        self._releasing: set[asyncio.Future[None]] = set()
        super().__init__()

    def _answers(self) -> None:
        """PING on a connection of its own with the probe's timeouts, to the Redis that the
        store's next connection would reach (the primary the Sentinels name)."""
        connection = self.red.connection_pool.make_connection()
        connection.socket_timeout = connection.socket_connect_timeout = PROBE_TIMEOUT_S
        try:
            connection.send_command("PING")
            connection.read_response()
        finally:
            connection.disconnect()

    async def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call` in a Redis thread; one that got no answer from Redis opens the breaker."""
        import redis

        started = time.monotonic()
        try:
            return await _in_thread(call, *args, **kwargs)
        except Exception as error:
            cause = error.__cause__ if isinstance(error, LockError) else error  # issue_ticket's
            if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
                stores.failed("lock", cause, started)
                # Idle connections lead where this one did: the next turns get new ones.
                self.red.connection_pool.disconnect(inuse_connections=False)
            raise

    def _keys(self, conversation_id: str) -> list[str]:
        base = self.key_prefix + conversation_id
        return [base, base + ":expires", base + ":next"]

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        keys = self._keys(conversation_id)
        try:
            ticket = int(self._issue(keys=keys, args=[int(lock_lifetime * 1000)]))
            if self.replicas and not self._replicated():
                self._finish(keys=keys, args=[ticket])
                raise LockError(f"no replica confirmed ticket {ticket} within {REPLICATED_WITHIN_MS} ms")
            return ticket
        except Exception as error:  # same contract as the stock store
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def _replicated(self) -> bool:
        """A replica has every write so far, or the primary has no replica connected."""
        if int(self.red.wait(1, REPLICATED_WITHIN_MS)) >= 1:
            return True
        role = self.red.execute_command("ROLE")  # ["master", offset, [connected replicas]]
        return not role[2]

    @asynccontextmanager
    async def lock(
        self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = 1
    ) -> AsyncGenerator[TicketLock, None]:
        if stores.is_open:
            raise stores.refusal()
        lease = min(LEASE_S, lock_lifetime)
        ticket = await self._call(self.issue_ticket, conversation_id, lease)
        renewal = asyncio.ensure_future(self._renew_lease(conversation_id, ticket, lease, lock_lifetime))
        try:
            yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            renewal.cancel()
            if stores.is_open:
                # A store away: the release may wait out Redis's timeouts, and the client its
                # refusal with it. Released meanwhile, or its lease runs out: the next ticket
                # waits either way. Only then a task of its own, off every turn's path.
                release = asyncio.ensure_future(self._release(conversation_id, ticket))
                self._releasing.add(release)  # the loop keeps only a weak reference to a task
                release.add_done_callback(self._releasing.discard)
            else:
                await self._release(conversation_id, ticket)

    async def _release(self, conversation_id: str, ticket: int) -> None:
        try:
            await self._call(self.cleanup, conversation_id, ticket)
        except Exception as error:
            # The turn is over (saved, or aborted): failing it now would tell the client its
            # saved message was lost. The ticket's lease runs out by itself.
            logger.warning(f"Could not release the lock of '{conversation_id}': {error}")

    async def _renew_lease(self, conversation_id: str, ticket: int, lease: float, lifetime: float) -> None:
        """Keep the ticket alive while this frontend waits or serves, until the lock lifetime."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + lifetime
        while ends - loop.time() > lease / 3:
            await asyncio.sleep(lease / 3)
            try:
                args = [ticket, max(1, int(min(lease, ends - loop.time()) * 1000))]
                keys = self._keys(conversation_id)
                if not int(await self._call(self._renew, keys=keys, args=args)):
                    return
            except Exception as error:  # Redis away for a moment: the next round tries again
                logger.warning(f"Could not renew the lock of '{conversation_id}': {error}")

    async def _acquire_lock(self, conversation_id: str, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        # Poll fast first, then back off to the caller's interval: a turn takes ~50-500 ms.
        wait = min(0.02, wait_time_in_seconds)
        while True:
            keys = self._keys(conversation_id)
            turn = int(await self._call(self._acquire, keys=keys, args=[ticket]))
            if turn == 1:
                return await _in_thread(self.get_lock, conversation_id) or TicketLock(conversation_id)
            if turn == -1:
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, wait_time_in_seconds)

    def update_lock(self, conversation_id: str) -> None:
        self._waiting(keys=self._keys(conversation_id))  # purges expired tickets

    def is_someone_waiting(self, conversation_id: str) -> bool:
        return int(self._waiting(keys=self._keys(conversation_id))) > 0

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._finish(keys=self._keys(conversation_id), args=[ticket_number])

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        # One step: a ticket issued meanwhile by another frontend keeps the lock alive.
        self.finish_serving(conversation_id, ticket_number)

    def get_lock(self, conversation_id: str) -> Optional[TicketLock]:
        queue, expiries, _ = self._keys(conversation_id)
        numbers = [int(n) for n in self.red.zrange(queue, 0, -1)]
        if not numbers:
            return None
        expires = self.red.hgetall(expiries)
        tickets = deque(Ticket(n, int(expires.get(str(n).encode(), 0)) / 1000) for n in numbers)
        return TicketLock(conversation_id, tickets)

    def save_lock(self, lock: TicketLock) -> None:
        queue, expiries, counter = self._keys(lock.conversation_id)
        with self.red.pipeline(transaction=True) as pipe:
            pipe.delete(queue, expiries)
            for ticket in lock.tickets:
                pipe.zadd(queue, {str(ticket.number): ticket.number})
                pipe.hset(expiries, str(ticket.number), int(ticket.expires * 1000))
            if lock.tickets:
                pipe.set(counter, max(t.number for t in lock.tickets))
            pipe.execute()

    def delete_lock(self, conversation_id: str) -> None:
        self._log_deletion(conversation_id, bool(self.red.delete(*self._keys(conversation_id))))
