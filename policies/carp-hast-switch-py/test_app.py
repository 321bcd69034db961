"""Unit tests of the core port (python3 -m pytest, in a folder with haven_policy.py and the
bindings; host/cli/tests/languages.rs assembles one)."""

from app import CarpHastSwitch
from haven_policy import Plan, ScriptedHost, events, types

SETTINGS = {"vhid": 1, "services": ["mysql-server"], "hold-down-ms": 5000,
            "resources": [{"name": "test", "mountpoint": "/hast/test", "fstype": "ufs"}]}


def secondary():
    return (ScriptedHost().hast("test", types.HastRole.SECONDARY).device("/dev/hast/test", False)
            .mount("/hast/test").service("mysql-server", False).now(1000))


def test_master_promotes_in_the_recipes_order():
    plan = CarpHastSwitch(SETTINGS).handle(events.carp(1, "em0", types.CarpState.MASTER),
                                               secondary())
    expected = (Plan.builder()
                .wait_worker_gone("test", types.HastRole.SECONDARY, 10_000)
                .hast_role("test", types.HastRole.PRIMARY, 30_000)
                .wait_device("/dev/hast/test", 30_000)
                .fsck("/dev/hast/test", "ufs", True, 600_000)
                .mount("/dev/hast/test", "/hast/test", "ufs", 60_000)
                .start_service("mysql-server", 120_000)
                .build())
    assert plan == expected


def test_an_edge_within_the_hold_down_settles_on_a_timer():
    host = secondary()
    policy = CarpHastSwitch(SETTINGS)
    policy.handle(events.carp(1, "em0", types.CarpState.MASTER), host)
    assert host.kv["last-act-ms"] == "1000"
    plan = policy.handle(events.carp(1, "em0", types.CarpState.BACKUP), host.now(2000))
    assert plan == Plan.builder().set_timer("settle", 5000).build()
    assert host.kv["desired"] == "backup" and host.kv["settle-pending"] == "1"


def test_settings_outside_the_port_are_refused_by_name():
    try:
        CarpHastSwitch(dict(SETTINGS, bogus=1))
    except ValueError as error:
        assert "bogus" in str(error)
    else:
        raise AssertionError("accepted an unknown setting")


def test_an_interrupted_sync_refuses_the_promotion_and_names_the_fact():
    host = secondary().unix(1_764_876_003_000)
    policy = CarpHastSwitch(SETTINGS)
    assert policy.handle(types.Event_HastHook(types.HastHook_SyncInterrupted("test")),
                         host).is_none()
    assert host.kv["sync:test"] == "interrupted"
    assert host.kv["sync-fact:test"] == ("this host's hastd ran `syncintr`, recorded "
                                         "2025-12-04 19:20:03 UTC")
    plan = policy.handle(events.carp(1, "em0", types.CarpState.MASTER), host)
    [alert] = plan.steps
    assert alert.action.value.severity == types.AlertSeverity.CRITICAL
    assert "refusing to promote" in alert.action.value.message
    assert "`test` (interrupted: this host's hastd ran `syncintr`" in alert.action.value.message


def primary():
    return (ScriptedHost().hast("test", types.HastRole.PRIMARY, dirty_bytes=0)
            .device("/dev/hast/test", True).mount("/hast/test", "/dev/hast/test")
            .service("mysql-server", True).now(1000))


def test_a_switchover_with_no_peer_link_is_refused_and_changes_nothing():
    host = primary()
    ask = types.OperatorRequest(0, types.OperatorAsk_Switchover(None))
    plan = CarpHastSwitch(SETTINGS).handle(types.Event_Operator(ask), host)
    [alert] = plan.steps
    assert alert.action.value.severity == types.AlertSeverity.WARNING
    assert alert.action.value.message.startswith(
        "switchover refused: no peer link is configured ([peer] in haven.toml)")
    assert "carp-demoted" not in host.kv


def test_a_serving_host_that_loses_the_witness_key_and_has_no_voucher_demotes():
    state = types.WitnessState(reachable=True, leader=None, holding=False, isolated_serve_ms=0)
    event = types.Event_Witness(types.WitnessEvent(types.WitnessChange_KeyLost(7), state))
    plan = CarpHastSwitch(SETTINGS).handle(event, primary())
    assert "fencing token 7" in plan.steps[0].action.value.message
    assert plan.steps[1:] == (Plan.builder()
                              .stop_service("mysql-server", 120_000)
                              .unmount("/hast/test", True, 60_000)
                              .hast_role("test", types.HastRole.SECONDARY, 30_000)
                              .build().steps)
