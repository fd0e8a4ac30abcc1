"""Plans are data: each command's steps, in order, from the placement alone."""

from __future__ import annotations

from syrcad.plan import commands, place, steps
from syrcad.plan.readiness import IN_LB_WITHIN_S, READY_WITHIN_S
from syrcad.plan.steps import Step

from .test_placement import cluster_with


def lines(plan: steps.Plan) -> list[str]:
    return [str(step) for step in plan.steps]


def test_up_goes_stage_by_stage_then_brings_every_replica_in() -> None:
    placement = place(cluster_with(frontends=2, actions=1, hosts=2))
    plan = steps.up(placement, changed={"app1": ["compose.yml"]}, missing_images={})
    assert lines(plan) == [
        "app1: write-files compose.yml",
        "store: start mongo-1, redis-1",
        f"wait-ready mongo-1, redis-1 (within {READY_WITHIN_S['mongo']}s)",
        "app1: start action-1",
        f"wait-ready action-1 (within {READY_WITHIN_S['action']}s)",
        "app1: start frontend-1",
        "app2: start frontend-2",
        f"wait-ready frontend-1, frontend-2 (within {READY_WITHIN_S['frontend']}s)",
        "app1: start action-lb-1, lb-1",
        "app2: start action-lb-2, lb-2",
        f"wait-ready action-lb-1, action-lb-2, lb-1, lb-2 (within {READY_WITHIN_S['lb']}s)",
        "store: remove-orphans",
        "app1: remove-orphans",
        "app2: remove-orphans",
        "enable action-1, frontend-1, frontend-2",
        f"wait-in-lbs action-1, frontend-1, frontend-2 (within {IN_LB_WITHIN_S}s)",
    ]


def test_up_restarts_frontends_and_reloads_lbs_whose_files_changed() -> None:
    placement = place(cluster_with(frontends=2, actions=1, hosts=2))
    changed = {"app2": ["rasa/endpoints.yml", "lb/haproxy.cfg"]}
    plan = steps.up(placement, changed, missing_images={"store": ["syrcad/redis:7.0"]})
    assert plan.steps[0] == Step("ship-images", "store", ("syrcad/redis:7.0",))
    restart = Step(
        "restart-kept", "app2", ("frontend-2",), READY_WITHIN_S["frontend"], "unless started anew"
    )
    assert restart in plan.steps
    reloads = [s for s in plan.steps if s.action == "reload-lb"]
    assert [(s.host, s.names) for s in reloads] == [("app2", ("lb-2",))]


def test_scale_down_drains_first_and_records_the_count() -> None:
    old, new = place(cluster_with(4)), place(cluster_with(2))
    changed = {"app1": ["lb/haproxy.cfg"], "app2": ["lb/haproxy.cfg"]}
    plan = steps.scale(old, new, changed, record="scale frontend=2")
    assert lines(plan) == [
        "drain frontend-3, frontend-4",
        "app1: write-files lb/haproxy.cfg",
        "app2: write-files lb/haproxy.cfg",
        "app1: reload-lb lb-1",
        "app2: reload-lb lb-2",
        "store: remove-orphans",
        "app1: remove-orphans",
        "app2: remove-orphans",
        "app3: remove-orphans",
        "record-state (scale frontend=2)",
    ]
    assert [str(s) for s in plan.on_failure][-1] == "enable frontend-3, frontend-4"


def test_scale_up_starts_new_replicas_and_waits_for_them_in_the_lbs() -> None:
    old, new = place(cluster_with(2, hosts=2)), place(cluster_with(3, hosts=2))
    plan = steps.scale(old, new, {}, record="scale frontend=3")
    assert lines(plan) == [
        "app1: start frontend-3",
        f"wait-ready frontend-3 (within {READY_WITHIN_S['frontend']}s)",
        f"wait-in-lbs frontend-3 (within {IN_LB_WITHIN_S}s)",
        "store: remove-orphans",
        "app1: remove-orphans",
        "app2: remove-orphans",
        "record-state (scale frontend=3)",
    ]


def test_rollout_replaces_a_batch_at_a_time() -> None:
    plan = steps.rollout(place(cluster_with(3)), "frontend", batch=2, changed={})
    assert lines(plan)[:7] == [
        "read-models frontend-1, frontend-2",
        "drain frontend-1, frontend-2",
        "app1: recreate frontend-1",
        "app2: recreate frontend-2",
        f"wait-ready frontend-1, frontend-2 (within {READY_WITHIN_S['frontend']}s)",
        "enable frontend-1, frontend-2",
        f"wait-in-lbs frontend-1, frontend-2 (within {IN_LB_WITHIN_S}s)",
    ]
    assert lines(plan)[7:9] == ["read-models frontend-3", "drain frontend-3"]
    assert lines(plan)[-1] == "check-model frontend-1, frontend-2, frontend-3"


def test_down_stops_load_balancers_before_stores() -> None:
    plan = steps.down(place(cluster_with(2, hosts=2)), volumes=True)
    assert lines(plan) == [
        "app1: stop (and delete its volumes)",
        "app2: stop (and delete its volumes)",
        "store: stop (and delete its volumes)",
    ]


def test_rotating_the_token_pauses_checks_around_rolling_frontends() -> None:
    placement = place(cluster_with(1, hosts=1))
    changed = {"app1": ["lb/haproxy.cfg"]}
    plan = steps.rotate(placement, ["rasa_token"], changed, True, True)
    actions = [s.action for s in plan.steps]
    assert actions == [
        "write-secrets",
        "write-files",
        "pause-checks",
        "drain",
        "recreate",
        "wait-ready",
        "enable",
        "reload-lb",
        "resume-checks",
        "wait-in-lbs",
    ]
    assert [s.action for s in plan.on_failure] == ["reload-lb", "resume-checks"]


def test_plans_print_as_json() -> None:
    plan = steps.down(place(cluster_with(1, hosts=1)), volumes=False)
    assert plan.as_dict()["steps"] == [
        {"action": "stop", "host": "app1", "names": [], "seconds": 0, "note": "", "wave": 0},
        {"action": "stop", "host": "store", "names": [], "seconds": 0, "note": "", "wave": 1},
    ]


def test_host_commands_quote_every_path() -> None:
    assert commands.release_lock("/srv/my cluster/lock") == "rm -rf '/srv/my cluster/lock'"
    assert commands.take_lock("/srv/c", "/srv/c/lock") == (
        "mkdir -p /srv/c && if mkdir /srv/c/lock 2>/dev/null; "
        "then cat > /srv/c/lock/holder.json && echo TAKEN; "
        "else cat /srv/c/lock/holder.json 2>/dev/null; fi"
    )
    assert commands.append_audit("/srv/c/a b", "audit.log") == (
        "mkdir -p '/srv/c/a b' && cat >> '/srv/c/a b'/audit.log"
    )
    assert commands.tail_audit("/srv/c", "audit.log", 5) == (
        "tail -n 5 /srv/c/audit.log 2>/dev/null || true"
    )
    assert commands.find_model("/p/models") == (
        "ls -1 /p/models/*.tar.gz 2>/dev/null | head -n 1 || true"
    )
    assert (
        commands.find_model("/p/models/m.tar.gz") == "ls -1 /p/models/m.tar.gz 2>/dev/null || true"
    )
    assert commands.haproxy_api()[:2] == ("bash", "-c")
    assert "show servers state" in commands.haproxy_reload()[2]


def test_listening_ports_come_from_the_kernel_tables() -> None:
    tables = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"  # 127.0.0.1:8080, listening
        "   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000\n"  # an established connection
        "   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A x\n"
    )
    assert commands.listening_ports(tables) == {8080, 80}


def test_only_host_steps_of_one_wave_run_side_by_side() -> None:
    from syrcad.apply.execute import _parallel_runs

    plan = steps.down(place(cluster_with(2, hosts=2)), volumes=False)
    assert [[s.host for s in group] for group in _parallel_runs(plan.steps)] == [
        ["app1", "app2"],  # both carry LBs: stopped together, before the store host
        ["store"],
    ]
    restarts = [Step("restart-kept", "app1", ("frontend-1",)), Step("restart-kept", "app2")]
    assert len(_parallel_runs(restarts)) == 2  # one replica's capacity at a time


def test_a_failed_step_keeps_its_cause_exit_code_and_says_what_was_undone() -> None:
    from syrcad.errors import RemoteError, StepFailed

    cause = RemoteError("node2", ["compose", "up"], 1, step="start frontend-2")
    error = StepFailed("scale", "node2: start frontend-2", cause, ["enable frontend-3"])
    assert error.exit_code == cause.exit_code == 4
    assert str(error).splitlines() == [
        "scale: step 'node2: start frontend-2' failed:",
        "node2: start frontend-2 failed (exit 1)",
        "scale stopped; then: enable frontend-3",
    ]
