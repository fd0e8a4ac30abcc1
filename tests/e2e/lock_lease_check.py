"""Run inside the Rasa image (Python 3.9, Rasa installed) against a real Redis: how long a
sender's next message waits behind a dead holder, a live one past the lease, and a live one
past its lock lifetime.

    python lock_lease_check.py HOST PORT PASSWORD   → one JSON line of seconds waited
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import syrcad_lock_store
from rasa.utils.endpoints import EndpointConfig

LEASE_S = 3.0  # short, to keep the test short
syrcad_lock_store.LEASE_S = LEASE_S

Store = syrcad_lock_store.AtomicRedisLockStore


async def dead(store: Store, sender: str) -> None:
    """Issued, then neither renewed nor given back: a frontend killed mid-turn."""
    store.issue_ticket(sender, LEASE_S)


def live(seconds: float, lifetime: float = 60) -> Callable[[Store, str], Awaitable[None]]:
    async def hold(store: Store, sender: str) -> None:
        try:
            async with store.lock(sender, lock_lifetime=lifetime):
                await asyncio.sleep(seconds)
        except syrcad_lock_store.LockError:
            pass  # past its lifetime a holder loses the lock, as with the stock store

    return hold


async def waited_behind(store: Store, holder: Callable[[Store, str], Awaitable[None]]) -> float:
    sender = f"lease-check-{uuid.uuid4()}"
    holding = asyncio.ensure_future(holder(store, sender))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    async with store.lock(sender):
        waited = time.monotonic() - started
    await holding
    return round(waited, 1)


async def main() -> None:
    host, port, password = sys.argv[1:4]
    store = Store(EndpointConfig(url=host, port=int(port), password=password, db=1))
    figures = {
        "dead": await waited_behind(store, dead),
        "live_8s": await waited_behind(store, live(8)),
        "live_8s_lifetime_5s": await waited_behind(store, live(8, lifetime=5)),
    }
    print(json.dumps({"lease_s": LEASE_S, **figures}))


asyncio.run(main())
