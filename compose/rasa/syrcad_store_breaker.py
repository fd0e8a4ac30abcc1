"""A frontend's breaker for its stores: once a call to a store fails for want of an answer,
turns are refused at once, before they touch any store, until every store answers a probe.

Without it every turn during an outage waits out the store's timeouts (seconds each, one store
after another), and each Rasa process takes only a few requests at a time: the messages behind
those turns wait in the LB's queue, and once the store is back they are served late, behind
calls still waiting on requests the outage swallowed. With it, the first failed call costs its
turn the timeout; every later message gets its 503 in milliseconds, and the probes (a short
timeout, every PROBE_EVERY_S) let turns through again within about a second of the store's
return. A one-off failure of a store that is fine costs the turns of one probe interval.

One breaker for all the stores, not one each: a turn needs every store, and when one host
holding both is lost, the lock store fails over to another Redis within seconds while the
tracker store stays away. A breaker of the lock store's own would close then, and each turn
would go on to wait out the tracker store's timeouts as well.

Under Swarm, a process whose breaker is open also leaves a file named by its pid in
SYRCAD_BREAKER_MARKS: the task's agent (leave_lbs_first.py) then asks the LBs to send it nothing,
and they send the turns to a frontend that reaches its stores, if any does. It matters most when
a lost host's link returns: Swarm's DNS lists its old frontend again, breakers still open, until
Swarm stops it.

syrcad mounts this file beside syrcad_turns.py and syrcad_lock_store.py, which share `stores`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

logger = logging.getLogger(__name__)

# Seconds between probes of a store that did not answer, and how long a probe waits for it: a
# store answers a ping within milliseconds, a host that is gone never.
PROBE_EVERY_S = 0.5
PROBE_TIMEOUT_S = 1.0
OPEN_MARKS = os.environ.get("SYRCAD_BREAKER_MARKS")


class StoreNotAnswering(Exception):
    """A turn refused by the open breaker, before it touched a store."""

    def __init__(self, store: str, message: str):
        super().__init__(message)
        self.store = store


class StoresBreaker:
    """Whether this process lets turns reach its stores, and the probes that close it again."""

    def __init__(self) -> None:
        self._probes: Dict[str, Callable[[], object]] = {}
        # One thread a store: a probe that hangs past its timeout holds back only that store's.
        self._probers: Dict[str, ThreadPoolExecutor] = {}
        self._probing: Optional[asyncio.Future[None]] = None
        self.open_since: Optional[float] = None
        self.away: List[str] = []  # the stores that did not answer, as far as the probes know
        self.closed_at = 0.0  # time.monotonic()

    def watch(self, store: str, probe: Callable[[], object]) -> None:
        """`probe` blocks, and raises unless `store` answered within PROBE_TIMEOUT_S."""
        self._probes[store] = probe
        if store not in self._probers:
            self._probers[store] = ThreadPoolExecutor(1, thread_name_prefix=f"syrcad-{store}-probe")

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    def refusal(self) -> StoreNotAnswering:
        assert self.open_since is not None
        away_s = time.monotonic() - self.open_since
        store = self.away[0]
        return StoreNotAnswering(
            store, f"The {' and '.join(self.away)} store has not answered for {away_s:.1f}s; not tried until it does"
        )

    def failed(self, store: str, error: BaseException, call_started: float) -> None:
        """A call to `store`, started at `call_started` (time.monotonic()), got no answer:
        refuse turns until every store answers a probe. Call it on the event loop.

        A call that started before the probes last got their answers was sent into the outage,
        and its failure says nothing new: reopening for it would refuse turns the stores serve.
        """
        if call_started < self.closed_at:
            return
        if store not in self.away:
            self.away.append(store)
        if self.open_since is None:
            self.open_since = time.monotonic()
            logger.warning(f"The {store} store did not answer ({error!r}); refusing turns until every store does")
            _mark_open(True)
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe_until_answered())

    async def _answers(self, store: str) -> bool:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._probers[store], self._probes[store]), PROBE_TIMEOUT_S)
            return True
        except Exception as error:
            logger.debug(f"The {store} store does not answer yet: {error!r}")
            return False

    async def _probe_until_answered(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            stores = list(self._probes)
            answered = await asyncio.gather(*(self._answers(store) for store in stores))
            self.away = [store for store, answers in zip(stores, answered) if not answers]
            if self.away:
                continue
            assert self.open_since is not None
            logger.warning(f"Every store answers again after {time.monotonic() - self.open_since:.1f}s")
            self.open_since, self.closed_at = None, time.monotonic()
            _mark_open(False)
            return


def _mark_open(is_open: bool) -> None:
    """Says in OPEN_MARKS, if set, whether this process's breaker is open."""
    if not OPEN_MARKS:
        return
    mark = os.path.join(OPEN_MARKS, str(os.getpid()))
    try:
        if is_open:
            open(mark, "w").close()
        else:
            os.remove(mark)
    except OSError as error:  # the LBs keep sending turns, which the breaker refuses
        logger.warning(f"Could not tell this task's agent that the breaker is {'open' if is_open else 'closed'}: {error!r}")


# The process's breaker, shared by its tracker store and lock store.
stores = StoresBreaker()
