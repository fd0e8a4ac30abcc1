"""How long a new replica of each service may take to turn healthy. Pure data.

The apply layer waits this long for a replica it started; the renderer derives the frontend
healthcheck's start period from it, so Docker does not call a frontend unhealthy while syrcad
still waits for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from syrcad.plan.placement import Container, Service

READY_WITHIN_S: dict[Service, int] = {
    "mongo": 120,
    "postgres": 120,
    "redis": 60,
    "sentinel": 60,
    "model-server": 60,
    "action": 180,
    # A frontend loads its model: four loading at once beside two serving at full load took
    # over 225 s on 2 cores.
    "frontend": 420,
    "action-lb": 60,
    "lb": 60,
    "keepalived": 60,
    "blackbox": 60,
    "prometheus": 60,
}

# The Sentinels call a silent Redis primary lost after this long, then promote a replica (a
# second or two): the lock store's failover window. A failover that stalls is tried again after
# twice the timeout.
REDIS_PRIMARY_DOWN_AFTER_S = 5
REDIS_FAILOVER_TIMEOUT_S = 30

# VRRP adverts between the LB hosts: a backup takes the virtual address over about 3.6 adverts
# after the master's last (RFC 5798's Master_Down_Interval).
VRRP_ADVERT_S = 1
VRRP_GARP_REFRESH_S = 2

# A new Mongo replica set elects its first primary in seconds; a re-run finds it at once.
PRIMARY_WITHIN_S = 60

# Docker's health checks of every container: a check every interval, unhealthy after retries.
HEALTHCHECK_INTERVAL_S = 5
HEALTHCHECK_RETRIES = 3
# Failed checks while a frontend loads its model count as "starting" until this long after its
# start: inside syrcad's wait by more than the checks' interval × retries.
FRONTEND_START_PERIOD_S = READY_WITHIN_S["frontend"] - 20
# The same grace for an action server's import of its actions, and a store's first start.
ACTION_START_PERIOD_S = 60
STORE_START_PERIOD_S = 30
# The LBs' own checks of their servers: every interval; DOWN after `fall`, UP after `rise`.
LB_CHECK_INTERVAL_S = 2
LB_CHECK_FALL = 2
LB_CHECK_RISE = 2
# How long after a host is lost the LBs mark its replicas DOWN (the action LB then cuts the calls
# still open on them: on-marked-down shutdown-sessions): a check may start an interval late, and
# each of the `fall` checks to a host that is gone waits the interval for its answer.
LB_LOSS_DETECTED_WITHIN_S = LB_CHECK_INTERVAL_S * (1 + 2 * LB_CHECK_FALL)
# How long an LB waits for a replica to take a connection (a LAN's handshake takes well under a
# millisecond): a replica on a host that is gone costs a request this much before the LB marks
# it DOWN (observe layer4) and sends the request to another.
LB_CONNECT_TIMEOUT_S = 1
# A request under way on a host that is lost: the public LB's kernel probes the connection, idle
# while the frontend works on the turn (TCP keepalive), after LB_DEAD_PEER_IDLE_S, then every
# LB_DEAD_PEER_INTERVAL_S; once LB_DEAD_PEER_PROBES went unanswered the LB sends the message to
# another frontend, with its id (haproxy/public.cfg.j2). A replica that is alive answers them
# however long its turn takes.
LB_DEAD_PEER_IDLE_S = 1
LB_DEAD_PEER_INTERVAL_S = 1
LB_DEAD_PEER_PROBES = 2
LB_DEAD_PEER_FOUND_WITHIN_S = LB_DEAD_PEER_IDLE_S + LB_DEAD_PEER_INTERVAL_S * LB_DEAD_PEER_PROBES
# How long a frontend waits for a store before it fails the turn with a 503: to connect, and for
# an answer (a Mongo read of a long conversation is the slowest).
STORE_CONNECT_TIMEOUT_S = 3
STORE_REPLY_TIMEOUT_S = 10


def ready_within_s(containers: Iterable[Container]) -> int:
    """How long the slowest of `containers` may take to turn healthy (0 for none: a scale-down)."""
    return max((READY_WITHIN_S[c.service] for c in containers), default=0)


# How long a drained replica may take to finish its in-flight requests before syrcad goes on.
DRAIN_TIMEOUT_S = 60
# How long the LBs may take to see a ready replica UP (LB_CHECK_RISE checks, and a reload).
IN_LB_WITHIN_S = 60
# How long Swarm may take to stop a removed stack's tasks (their stop grace period is 30 s).
STACK_REMOVED_WITHIN_S = 90
# Under Swarm, a task asked to stop tells its LBs to drain it (their agent checks come every
# AGENT_INTERVAL_S), then stops SWARM_LEAVE_LBS_S later, finishing its requests: no request is
# sent to it once it has stopped listening. A name Swarm no longer lists stays in the LBs for
# 30 s (`hold obsolete`) because leaving them (maintenance) would cut its open requests.
SWARM_AGENT_INTERVAL_S = 1
SWARM_LEAVE_LBS_S = 5
# When a cut manager returns, the managers may elect a leader again; swarm commands fail
# ("the swarm does not have a leader") meanwhile: half a minute or more on the test hosts.
SWARM_LEADER_ELECTED_WITHIN_S = 120
