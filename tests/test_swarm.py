"""engine: swarm as data: the swarm's shape, the plans, and the stack file and its secrets."""

from __future__ import annotations

import yaml

from syrcad.apply.shipping import needed
from syrcad.apply.swarm import electing
from syrcad.config.model import Cluster
from syrcad.config.secrets import Secrets
from syrcad.errors import RemoteError
from syrcad.plan import place, steps, swarm
from syrcad.plan.readiness import READY_WITHIN_S, STACK_REMOVED_WITHIN_S
from syrcad.render import render
from syrcad.render.stack import STACK_FILE, render_stack

from .test_placement import cluster_with
from .test_steps import lines


def on_swarm(frontends: int = 2, hosts: int = 2) -> Cluster:
    return cluster_with(frontends, hosts=hosts).model_copy(update={"engine": "swarm"})


def test_three_managers_from_three_hosts_and_the_first_lb_host_founds_the_swarm() -> None:
    assert swarm.node_roles(on_swarm(hosts=3)) == {
        "app1": "manager",
        "app2": "manager",
        "app3": "manager",
        "store": "worker",
    }
    # Two managers lose quorum with either: one, until there are three hosts.
    two = Cluster.model_validate(
        {
            "engine": "swarm",
            "hosts": {
                "store": {"address": "10.0.0.9", "roles": ["mongo", "redis"]},
                "app": {"address": "10.0.0.1", "roles": ["frontend", "action", "lb"]},
            },
            "project": {"path": "/srv/bot"},
        }
    )
    assert swarm.node_roles(two) == {"app": "manager", "store": "worker"}
    assert swarm.node_labels(two, "store") == {
        "io.syrcad.syrcad.host": "store",
        "io.syrcad.syrcad.mongo": "true",
        "io.syrcad.syrcad.redis": "true",
    }


def test_up_from_nothing_founds_joins_labels_takes_over_from_compose_and_deploys() -> None:
    cluster = on_swarm()
    placement = place(cluster)
    plan = steps.swarm_up(
        cluster,
        placement,
        joined={},
        compose_hosts=["app2"],
        changed={"app1": ["stack.yml"]},
        missing_images={"store": ["mongo:7.0", "redis:7.2"]},
    )
    services = "mongo-1, redis-1, action, frontend, action-lb, lb"
    assert lines(plan) == [
        "store: ship-images mongo:7.0, redis:7.2",
        "app1: init-swarm",
        "app2: join-swarm (manager)",
        "store: join-swarm (manager)",
        "label-nodes app1, app2, store",
        "app2: stop-compose",
        "app1: write-files stack.yml",
        f"app1: deploy-stack {services}",
        f"wait-converged {services} (within {READY_WITHIN_S['frontend']}s)",
    ]


def test_up_again_only_deploys_the_same_stack_and_checks() -> None:
    cluster = on_swarm()
    joined = dict.fromkeys(cluster.hosts, True)
    plan = steps.swarm_up(cluster, place(cluster), joined, [], {}, {})
    assert [s.action for s in plan.steps] == ["label-nodes", "deploy-stack", "wait-converged"]


def test_scale_sets_the_count_and_needs_no_lb_reload(fixed_secrets: Secrets) -> None:
    small, large = on_swarm(frontends=2), on_swarm(frontends=6)
    plan = steps.swarm_scale(
        large, place(small), place(large), {"frontend": 6}, {"app1": ["stack.yml"]}, "scale x"
    )
    # One more task per frontend host at a time, each step once the last has turned healthy.
    waits = [s.note for s in plan.steps if s.action == "wait-converged"]
    assert [str(s) for s in plan.steps if s.action != "wait-converged"] == [
        "app1: write-files stack.yml",
        "scale-service frontend (4)",
        "scale-service frontend (6)",
        "record-state (scale x)",
    ]
    assert waits == ["frontend=4", "frontend=6"]
    down = steps.swarm_scale(small, place(large), place(small), {"frontend": 2}, {}, "scale y")
    assert [s.note for s in down.steps][:2] == ["2", "frontend=2"]
    before = {str(f.path): f.content for f in render_stack(small, place(small), fixed_secrets)}
    after = {str(f.path): f.content for f in render_stack(large, place(large), fixed_secrets)}
    # The LBs find every task in Swarm's DNS: only the stack file's count changes.
    assert [p for p in after if after[p] != before[p]] == ["stack.yml"]
    assert (
        f"server-template frontend {swarm.SLOTS} tasks.syrcad_frontend:5005"
        in (after["lb/haproxy.cfg"])
    )
    assert "server frontend-" not in after["lb/haproxy.cfg"]


def test_a_changed_file_is_a_new_secret_so_the_services_using_it_roll(
    fixed_secrets: Secrets,
) -> None:
    cluster = on_swarm()
    first = {str(f.path): f.content for f in render_stack(cluster, place(cluster), fixed_secrets)}
    rotated = Secrets(**{**fixed_secrets.as_dict(), "redis_password": "another-redis-pass-00"})
    second = {str(f.path): f.content for f in render_stack(cluster, place(cluster), rotated)}
    name = swarm.object_name(cluster, "redis/redis.conf", first["redis/redis.conf"])
    assert f"name: {name}" in first["stack.yml"]
    assert f"name: {name}" not in second["stack.yml"]
    assert "redis-redis-conf" in second["stack.yml"]


def test_down_with_leave_removes_the_stack_then_the_founder_leaves_last() -> None:
    plan = steps.swarm_down(on_swarm(), volumes=True, leave=True)
    assert lines(plan) == [
        f"app1: remove-stack (within {STACK_REMOVED_WITHIN_S}s)",
        "app1: remove-volumes",
        "app2: remove-volumes",
        "store: remove-volumes",
        "store: leave-swarm",
        "app2: leave-swarm",
        "app1: leave-swarm",
    ]


def test_every_node_gets_the_images_of_its_roles_as_swarm_may_start_any_there() -> None:
    cluster = on_swarm(frontends=1, hosts=2)  # frontend-1 placed on app1 only, under compose
    assert needed(cluster, place(cluster), "app2") == [
        "haproxy:2.8",
        "rasa/rasa-sdk:3.6.2",
        "rasa/rasa:3.6.21-full",
    ]


def test_prometheus_runs_pinned_to_the_monitoring_host_which_alone_gets_its_image() -> None:
    cluster = on_swarm(frontends=1, hosts=2)
    monitoring = cluster.monitoring.model_copy(update={"prometheus": True})
    cluster = cluster.model_copy(update={"monitoring": monitoring})
    placement = place(cluster)
    host = cluster.monitoring_host()
    assert host == "app1"
    assert cluster.images.prometheus in needed(cluster, placement, host)
    assert cluster.images.prometheus not in needed(cluster, placement, "app2")
    assert swarm.stack_services(placement)[-2:] == ("blackbox-1", "prometheus-1")


def test_the_stack_keeps_compose_store_volumes_so_a_switch_keeps_the_data(
    fixed_secrets: Secrets,
) -> None:
    """Compose names a volume PROJECT_NAME, a stack STACK_NAME; both are the cluster's name."""
    on_compose, on_stack = cluster_with(2, hosts=2), on_swarm()
    composed = next(
        f
        for f in render(on_compose, place(on_compose), fixed_secrets)
        if f.host == "store" and f.path.name == "compose.yml"
    )
    stacked = next(
        f
        for f in render_stack(on_stack, place(on_stack), fixed_secrets)
        if f.path.name == STACK_FILE
    )
    compose, stack = yaml.safe_load(composed.content), yaml.safe_load(stacked.content)
    assert compose["name"] == on_stack.name
    for store in ("mongo-1", "redis-1"):
        mounted = compose["services"][store]["volumes"][0]
        assert mounted in stack["services"][store]["volumes"]
        assert mounted.split(":")[0] in stack["volumes"]


def test_a_managers_election_answers_are_asked_again_other_errors_are_not() -> None:
    """Seen from managers while a cut manager returned: syrcad asks again (swarm.electing)."""
    answers = [
        "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that "
        "too few managers are online.",
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        "raft: failed to process the request: node lost leader statusfailed to remove some "
        "resources from stack: e2e",
    ]
    for answer in answers:
        assert electing(RemoteError("node1", ["stack", "rm"], 1, stderr=answer)), answer
    refused = RemoteError("node1", ["stack", "rm"], 1, stderr="permission denied")
    assert not electing(refused)
