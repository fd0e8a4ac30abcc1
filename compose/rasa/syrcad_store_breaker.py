"""A frontend's breaker for one store: once a call to the store fails for want of an answer,
turns are refused at once, before they touch the store, until a probe gets an answer again.

Without it every turn during an outage waits out the store's timeouts (seconds each, one store
after another), and each Rasa process takes only a few requests at a time: the messages behind
those turns wait in the LB's queue, and once the store is back they are served late, behind
calls still waiting on requests the outage swallowed. With it, the first failed call costs its
turn the timeout; every later message gets its 503 in milliseconds, and the probe (a short
timeout, every PROBE_EVERY_S) lets turns through again within about a second of the store's
return. A one-off failure of a store that is fine costs the turns of one probe interval.

syrcad mounts this file beside syrcad_turns.py and syrcad_lock_store.py, which use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

logger = logging.getLogger(__name__)

# Seconds between probes of a store that did not answer, and how long a probe waits for it: a
# store answers a ping within milliseconds, a host that is gone never.
PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 1.0


class StoreNotAnswering(Exception):
    """A turn refused by an open breaker, before it touched the store."""


class StoreBreaker:
    """Whether this process lets turns reach one store, and the probe that closes it again."""

    def __init__(self, store: str, probe: Callable[[], object]):
        self.store = store
        self._probe = probe  # blocking; raises unless the store answered within PROBE_TIMEOUT_S
        # One thread: a probe that hangs past its timeout holds back only the next probes.
        self._prober = ThreadPoolExecutor(1, thread_name_prefix=f"syrcad-{store}-probe")
        self._probing: Optional[asyncio.Future[None]] = None
        self.open_since: Optional[float] = None
        self.closed_at = 0.0  # time.monotonic()

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    def refusal(self) -> StoreNotAnswering:
        assert self.open_since is not None
        away_s = time.monotonic() - self.open_since
        return StoreNotAnswering(f"The {self.store} store has not answered for {away_s:.1f}s; not tried until it does")

    def failed(self, error: BaseException, call_started: float) -> None:
        """A call to the store, started at `call_started` (time.monotonic()), got no answer:
        refuse turns until a probe gets one. Call it on the event loop.

        A call that started before the last probe got its answer was sent into the outage, and
        its failure says nothing new: reopening for it would refuse turns the store now serves.
        """
        if call_started < self.closed_at:
            return
        if self.open_since is None:
            self.open_since = time.monotonic()
            logger.warning(f"The {self.store} store did not answer ({error!r}); refusing turns until it does")
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe_until_answered())

    async def _probe_until_answered(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            try:
                await asyncio.wait_for(loop.run_in_executor(self._prober, self._probe), PROBE_TIMEOUT_S)
            except Exception as error:
                logger.debug(f"The {self.store} store does not answer yet: {error!r}")
                continue
            assert self.open_since is not None
            logger.warning(
                f"The {self.store} store answers again after {time.monotonic() - self.open_since:.1f}s"
            )
            self.open_since, self.closed_at = None, time.monotonic()
            return
