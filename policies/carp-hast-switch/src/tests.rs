//! Native unit tests of the policy's rules, against `ScriptedHost`. Each test states one rule of
//! the README; the helpers below build the standard machine and the plans the recipe implies.

use crate::{CarpHastSwitch, Settings};
use haven_sdk::testing::{ScriptedHost, events};
use haven_sdk::{
    Action, AlertSeverity, CarpState, Event, HastHook, HastReplication, HastRole, HastStatus,
    InterruptedStep, LogLevel, Plan, Policy, StartupState, Step, StepFailure, UnmountRequest,
};

const DEVICE: &str = "/dev/hast/test";
const MOUNTPOINT: &str = "/hast/test";
const SERVICE: &str = "mysql-server";

/// The recipe's deployment: vhid 1, resource `test` on `/hast/test`, MySQL.
const SETTINGS: &str = r#"
vhid = 1
services = ["mysql-server"]

[[resources]]
name = "test"
mountpoint = "/hast/test"
fstype = "ufs"
"#;

/// Settings from TOML, as the operator writes them.
fn settings(toml: &str) -> Settings {
    toml::from_str(toml).expect("settings parse")
}

/// The policy with the standard settings, `extra` top-level keys added in front.
fn policy_with(extra: &str) -> CarpHastSwitch {
    CarpHastSwitch::new(settings(&format!("{extra}\n{SETTINGS}"))).expect("settings are valid")
}

/// The policy following the recipe's `carp0` link events instead of vhid 1.
fn legacy_policy() -> CarpHastSwitch {
    let toml = SETTINGS.replace("vhid = 1", "carp-interface = \"carp0\"");
    CarpHastSwitch::new(settings(&toml)).expect("settings are valid")
}

/// Handle one event with the standard settings plus `extra`.
fn run_with(extra: &str, host: &ScriptedHost, event: Event) -> Plan {
    policy_with(extra).handle(&event, host).expect("handled")
}

/// Handle one event with the standard settings.
fn run(host: &ScriptedHost, event: Event) -> Plan {
    run_with("", host, event)
}

/// The standard machine: resource `test` in `role`, its filesystem mounted or not, MySQL
/// running or not. The clock reads 0 and the store is empty.
fn machine(role: HastRole, mounted: bool, running: bool) -> ScriptedHost {
    let host = ScriptedHost::new()
        .hast_role("test", role)
        .service(SERVICE, running);
    if mounted {
        host.mounted(DEVICE, MOUNTPOINT, "ufs")
    } else {
        host.mountpoint(MOUNTPOINT)
    }
}

/// A standby host: secondary, nothing mounted, MySQL stopped.
fn standby() -> ScriptedHost {
    machine(HastRole::Secondary, false, false)
}

/// An active host: primary, mounted, MySQL running.
fn active() -> ScriptedHost {
    machine(HastRole::Primary, true, true)
}

fn carp(state: CarpState) -> Event {
    events::carp(1, "em0", state)
}

/// The whole `master` branch of the recipe, with the default timeouts.
fn full_promotion() -> Plan {
    Plan::builder()
        .wait_hast_worker_gone("test", HastRole::Secondary)
        .timeout_ms(10_000)
        .set_hast_role("test", HastRole::Primary)
        .timeout_ms(30_000)
        .then(mount_and_start())
        .build()
}

/// Waiting for the device, then fsck, mount and start.
fn mount_and_start() -> Plan {
    Plan::builder()
        .wait_for_device(DEVICE)
        .timeout_ms(30_000)
        .fsck(DEVICE, "ufs")
        .timeout_ms(600_000)
        .mount(DEVICE, MOUNTPOINT, "ufs")
        .timeout_ms(60_000)
        .start_service(SERVICE)
        .timeout_ms(120_000)
        .build()
}

/// The whole `slave` branch of the recipe, with the default timeouts.
fn full_demotion() -> Plan {
    Plan::builder()
        .stop_service(SERVICE)
        .timeout_ms(120_000)
        .unmount(MOUNTPOINT, true)
        .timeout_ms(60_000)
        .set_hast_role("test", HastRole::Secondary)
        .timeout_ms(30_000)
        .build()
}

/// Plan steps from `from` on, as a plan.
fn steps_from(plan: Plan, from: usize) -> Plan {
    Plan {
        steps: plan.steps[from..].to_vec(),
    }
}

/// The only step of `plan`, which must be an alert.
fn only_alert(plan: &Plan) -> (AlertSeverity, &str) {
    match plan.steps.as_slice() {
        [
            Step {
                action: Action::Alert(alert),
                ..
            },
        ] => (alert.severity, &alert.message),
        _ => panic!("expected a single alert, got {plan:?}"),
    }
}

/// Step `index` of `plan` failed with `reason`.
fn step_failed(plan: &Plan, index: usize, reason: &str) -> Event {
    Event::StepFailed(StepFailure {
        plan_id: 7,
        step_index: index as u32,
        step: plan.steps[index].clone(),
        reason: reason.into(),
    })
}

fn startup(interrupted: Option<InterruptedStep>) -> Event {
    Event::Startup(StartupState {
        carp: Vec::new(),
        hast: Vec::new(),
        mounts: Vec::new(),
        services: Vec::new(),
        interrupted,
        state_lost: None,
    })
}

fn kv(host: &ScriptedHost, key: &str) -> Option<String> {
    host.kv_snapshot().get(key).cloned()
}

// ------------------------------------------------------------------ following CARP, converging

#[test]
fn becoming_master_runs_the_recipe_in_order() {
    let host = standby();
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
    assert_eq!(kv(&host, "desired").as_deref(), Some("master"));
    assert_eq!(kv(&host, "last-act-ms").as_deref(), Some("0"));
}

#[test]
fn an_active_host_needs_no_action() {
    assert_eq!(run(&active(), carp(CarpState::Master)), Plan::none());
}

#[test]
fn a_primary_without_its_filesystem_only_mounts_and_starts() {
    let host = machine(HastRole::Primary, false, false);
    assert_eq!(
        run(&host, carp(CarpState::Master)),
        steps_from(mount_and_start(), 1)
    );
}

#[test]
fn a_primary_whose_device_is_missing_waits_for_it() {
    let host = machine(HastRole::Primary, false, false).device(DEVICE, false);
    assert_eq!(run(&host, carp(CarpState::Master)), mount_and_start());
}

#[test]
fn a_mounted_primary_only_starts_the_service() {
    let host = machine(HastRole::Primary, true, false);
    assert_eq!(
        run(&host, carp(CarpState::Master)),
        steps_from(mount_and_start(), 3)
    );
}

#[test]
fn resources_and_services_keep_their_order() {
    let toml = r#"
        vhid = 1
        services = ["db", "web"]
        [timeouts]
        role = 1
        [[resources]]
        name = "a"
        mountpoint = "/a"
        fstype = "ufs"
        [[resources]]
        name = "b"
        device = "/dev/gpt/b"
        mountpoint = "/b"
        fstype = "zfs"
    "#;
    let mut policy = CarpHastSwitch::new(settings(toml)).unwrap();
    let host = ScriptedHost::new()
        .hast_role("a", HastRole::Primary)
        .hast_role("b", HastRole::Secondary)
        .device("/dev/gpt/b", false)
        .mounted("/dev/hast/a", "/a", "ufs")
        .mountpoint("/b")
        .service("db", false)
        .service("web", true);
    let promotion = Plan::builder()
        .wait_hast_worker_gone("b", HastRole::Secondary)
        .timeout_ms(10_000)
        .set_hast_role("b", HastRole::Primary)
        .timeout_ms(1)
        .wait_for_device("/dev/gpt/b")
        .timeout_ms(30_000)
        .fsck("/dev/gpt/b", "zfs")
        .timeout_ms(600_000)
        .mount("/dev/gpt/b", "/b", "zfs")
        .timeout_ms(60_000)
        .start_service("db")
        .timeout_ms(120_000)
        .build();
    assert_eq!(
        policy.handle(&carp(CarpState::Master), &host).unwrap(),
        promotion
    );

    let demotion = Plan::builder()
        .stop_service("web")
        .timeout_ms(120_000)
        .unmount("/a", true)
        .timeout_ms(60_000)
        .set_hast_role("a", HastRole::Secondary)
        .timeout_ms(1)
        .build();
    let host = host.kv("last-act-ms", "0").now_ms(10_000);
    assert_eq!(
        policy.handle(&carp(CarpState::Backup), &host).unwrap(),
        demotion
    );
}

#[test]
fn backup_and_init_both_demote() {
    for state in [CarpState::Backup, CarpState::Init] {
        assert_eq!(run(&active(), carp(state)), full_demotion(), "{state:?}");
    }
}

#[test]
fn a_standby_host_needs_no_action() {
    assert_eq!(run(&standby(), carp(CarpState::Backup)), Plan::none());
}

#[test]
fn a_resource_in_init_is_made_secondary() {
    let host = machine(HastRole::Init, false, false);
    assert_eq!(
        run(&host, carp(CarpState::Backup)),
        steps_from(full_demotion(), 2)
    );
}

#[test]
fn force_unmount_can_be_turned_off() {
    let plan = run_with("force-unmount = false", &active(), carp(CarpState::Backup));
    assert_eq!(
        plan.steps[1].action,
        Action::Unmount(UnmountRequest {
            mountpoint: MOUNTPOINT.into(),
            force: false,
        })
    );
}

#[test]
fn a_foreign_filesystem_on_the_mountpoint_is_an_error() {
    let host = standby().mounted("/dev/ada0p4", MOUNTPOINT, "ufs");
    let error = policy_with("")
        .handle(&carp(CarpState::Master), &host)
        .unwrap_err();
    assert!(error.message().contains("/dev/ada0p4"), "{error}");
}

#[test]
fn a_query_outside_the_grants_is_an_error() {
    let host = ScriptedHost::new().hast_role("test", HastRole::Secondary);
    let error = policy_with("")
        .handle(&carp(CarpState::Master), &host)
        .unwrap_err();
    assert!(error.message().contains("not granted"), "{error}");
}

#[test]
fn legacy_link_events_are_followed() {
    let mut policy = legacy_policy();
    let up = events::carp_link("carp0", true);
    assert_eq!(policy.handle(&up, &standby()).unwrap(), full_promotion());
    let down = events::carp_link("carp0", false);
    assert_eq!(policy.handle(&down, &active()).unwrap(), full_demotion());
    let other = events::carp_link("carp1", true);
    assert_eq!(policy.handle(&other, &standby()).unwrap(), Plan::none());
    assert_eq!(
        policy.handle(&carp(CarpState::Master), &standby()).unwrap(),
        Plan::none()
    );
}

#[test]
fn other_vhids_are_ignored() {
    let host = standby();
    assert_eq!(
        run(&host, events::carp(2, "em0", CarpState::Master)),
        Plan::none()
    );
    assert!(host.kv_snapshot().is_empty());
}

// --------------------------------------------------------------------------------- hold-down

#[test]
fn an_edge_within_the_hold_down_only_arms_the_settle_timer() {
    let host = standby().kv("last-act-ms", "1000").now_ms(3_000);
    let settle = Plan::builder().set_timer("settle", 5_000).build();
    assert_eq!(run(&host, carp(CarpState::Master)), settle);
    assert_eq!(kv(&host, "settle-pending").as_deref(), Some("1"));
    assert_eq!(kv(&host, "desired").as_deref(), Some("master"));
    assert_eq!(kv(&host, "last-act-ms").as_deref(), Some("1000"));
}

#[test]
fn a_pending_settle_timer_absorbs_edges_even_after_the_hold_down() {
    let host = standby().kv("settle-pending", "1").now_ms(1_000_000);
    let plan = run(&host, carp(CarpState::Master));
    assert_eq!(plan, Plan::builder().set_timer("settle", 5_000).build());
}

#[test]
fn the_settle_timer_converges_to_the_last_desired_state() {
    let host = active()
        .kv("settle-pending", "1")
        .kv("desired", "backup")
        .now_ms(8_000);
    assert_eq!(run(&host, events::timer("settle")), full_demotion());
    assert_eq!(kv(&host, "settle-pending"), None);
    assert_eq!(kv(&host, "last-act-ms").as_deref(), Some("8000"));
}

#[test]
fn a_settled_flap_back_to_the_current_state_needs_no_action() {
    let host = active().kv("settle-pending", "1").kv("desired", "master");
    assert_eq!(run(&host, events::timer("settle")), Plan::none());
}

#[test]
fn after_the_hold_down_an_edge_acts_at_once() {
    let host = standby().kv("last-act-ms", "1000").now_ms(6_000);
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
    assert_eq!(kv(&host, "last-act-ms").as_deref(), Some("6000"));
}

#[test]
fn a_clock_that_restarted_does_not_hold_down() {
    let host = standby().kv("last-act-ms", "900000").now_ms(100);
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
}

#[test]
fn unknown_timers_and_status_polls_need_no_action() {
    let host = active().kv("desired", "backup");
    assert_eq!(run(&host, events::timer("other")), Plan::none());
    let status = HastStatus {
        resource: "test".into(),
        role: HastRole::Primary,
        replication: HastReplication::Degraded,
        dirty_bytes: Some(4096),
    };
    assert_eq!(run(&host, Event::HastStatusChanged(status)), Plan::none());
}

// ------------------------------------------------------------------------------ sync refusal

#[test]
fn promotion_onto_incomplete_data_is_refused() {
    for state in ["syncing", "interrupted", "split-brain"] {
        let host = standby().kv("sync:test", state);
        let plan = run(&host, carp(CarpState::Master));
        let (severity, message) = only_alert(&plan);
        assert_eq!(severity, AlertSeverity::Critical);
        for part in [
            "`test`",
            state,
            "allow-unsynchronised-promotion = true",
            "havenctl promote --accept-incomplete",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message:?}");
        }
    }
}

#[test]
fn synced_data_is_promoted() {
    let host = standby().kv("sync:test", "synced");
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
}

#[test]
fn the_override_allows_promotion_onto_incomplete_data() {
    let host = standby().kv("sync:test", "interrupted");
    let plan = run_with(
        "allow-unsynchronised-promotion = true",
        &host,
        carp(CarpState::Master),
    );
    assert_eq!(plan, full_promotion());
    assert!(
        host.logs()
            .iter()
            .any(|(level, _)| *level == LogLevel::Warn)
    );
}

#[test]
fn an_unknown_sync_record_is_an_error() {
    let host = standby().kv("sync:test", "maybe");
    assert!(
        policy_with("")
            .handle(&carp(CarpState::Master), &host)
            .is_err()
    );
}

// ----------------------------------------------------------------------------- sync tracking

#[test]
fn sync_hooks_are_recorded_on_the_secondary() {
    let hooks = [
        (HastHook::SyncStart("test".into()), "syncing"),
        (HastHook::SyncDone("test".into()), "synced"),
        (HastHook::SyncInterrupted("test".into()), "interrupted"),
    ];
    for (hook, state) in hooks {
        let host = standby();
        assert_eq!(run(&host, events::hast(hook)), Plan::none());
        assert_eq!(kv(&host, "sync:test").as_deref(), Some(state));
    }
}

#[test]
fn sync_hooks_on_the_primary_are_only_logged() {
    let host = active();
    assert_eq!(
        run(&host, events::hast(HastHook::SyncStart("test".into()))),
        Plan::none()
    );
    assert_eq!(kv(&host, "sync:test"), None);
    assert!(host.logs()[0].1.contains("peer's copy"));
}

#[test]
fn hooks_about_other_resources_are_ignored() {
    let host = standby();
    assert_eq!(
        run(&host, events::hast(HastHook::SplitBrain("other".into()))),
        Plan::none()
    );
    assert!(host.kv_snapshot().is_empty());
}

#[test]
fn becoming_primary_clears_the_record() {
    let host = active().kv("sync:test", "interrupted");
    run(
        &host,
        events::hast_role("test", HastRole::Secondary, HastRole::Primary),
    );
    assert_eq!(kv(&host, "sync:test"), None);
}

#[test]
fn recovering_from_split_brain_records_a_resync() {
    let host = standby().kv("sync:test", "split-brain");
    run(
        &host,
        events::hast_role("test", HastRole::Init, HastRole::Secondary),
    );
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("syncing"));
}

#[test]
fn an_ordinary_boot_does_not_block_a_later_failover() {
    for before in [None, Some("synced")] {
        let host = match before {
            Some(state) => standby().kv("sync:test", state),
            None => standby(),
        };
        run(
            &host,
            events::hast_role("test", HastRole::Init, HastRole::Secondary),
        );
        assert_eq!(kv(&host, "sync:test").as_deref(), before);
    }
}

#[test]
fn other_role_changes_and_connections_record_nothing() {
    let host = standby().kv("sync:test", "synced");
    run(
        &host,
        events::hast_role("test", HastRole::Secondary, HastRole::Init),
    );
    run(&host, events::hast(HastHook::Disconnect("test".into())));
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("synced"));
}

#[test]
fn split_brain_is_recorded_and_alerted_with_the_recovery_steps() {
    let host = standby();
    let plan = run(&host, events::hast(HastHook::SplitBrain("test".into())));
    let (severity, message) = only_alert(&plan);
    assert_eq!(severity, AlertSeverity::Critical);
    for step in [
        "hastctl role init test",
        "hastctl create test",
        "hastctl role secondary test",
        "hastctl list test",
    ] {
        assert!(message.contains(step), "{step:?} missing from {message:?}");
    }
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("split-brain"));
}

#[test]
fn the_serving_primary_alerts_on_split_brain_but_is_not_blocked() {
    let host = active();
    let plan = run(&host, events::hast(HastHook::SplitBrain("test".into())));
    assert_eq!(only_alert(&plan).0, AlertSeverity::Critical);
    assert_eq!(kv(&host, "sync:test"), None);

    // Even with an incomplete copy recorded, a primary whose service died gets it back.
    let host = machine(HastRole::Primary, true, false).kv("sync:test", "split-brain");
    let plan = run(&host, carp(CarpState::Master));
    assert_eq!(
        plan,
        Plan::builder()
            .start_service("mysql-server")
            .timeout_ms(120_000)
            .build()
    );
}

// ---------------------------------------------------------------------------------- startup

#[test]
fn startup_converges_to_the_current_carp_state_without_hold_down() {
    let host = standby()
        .carp(1, "em0", CarpState::Master)
        .kv("last-act-ms", "0")
        .kv("settle-pending", "1")
        .kv("promotion-failed", "fsck failed")
        .now_ms(10);
    assert_eq!(run(&host, startup(None)), full_promotion());
    assert_eq!(kv(&host, "desired").as_deref(), Some("master"));
    assert_eq!(kv(&host, "settle-pending"), None);
    assert_eq!(kv(&host, "promotion-failed"), None);
    assert_eq!(kv(&host, "last-act-ms"), None);
}

#[test]
fn the_first_carp_edge_after_startup_acts_at_once() {
    let host = standby().carp(1, "em0", CarpState::Backup).now_ms(100_000);
    assert_eq!(run(&host, startup(None)), Plan::none());
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
}

#[test]
fn startup_with_an_unknown_carp_state_needs_no_action() {
    assert_eq!(run(&active(), startup(None)), Plan::none());
}

#[test]
fn startup_in_legacy_mode_uses_the_last_desired_state() {
    let mut policy = legacy_policy();
    let host = active().kv("desired", "backup");
    assert_eq!(
        policy.handle(&startup(None), &host).unwrap(),
        full_demotion()
    );
}

#[test]
fn an_interrupted_step_is_not_rerun_blindly() {
    // fsck was running when the daemon stopped, but the filesystem is mounted by now.
    let interrupted = InterruptedStep {
        plan_id: 3,
        step_index: 3,
        step: full_promotion().steps[3].clone(),
    };
    let host = active().carp(1, "em0", CarpState::Master);
    assert_eq!(run(&host, startup(Some(interrupted))), Plan::none());
    assert!(host.logs()[0].1.contains("fsck"));
}

// ------------------------------------------------------------------------------ step failures

#[test]
fn a_failed_promotion_alerts_and_gives_back_what_it_took() {
    // The mount failed: the role is primary, nothing is mounted, MySQL never started.
    let host = machine(HastRole::Primary, false, false);
    let plan = run(&host, step_failed(&full_promotion(), 4, "mount: exit 1"));
    let (alert, demotion) = plan.steps.split_first().unwrap();
    let Action::Alert(alert) = &alert.action else {
        panic!("expected an alert first, got {plan:?}");
    };
    assert_eq!(alert.severity, AlertSeverity::Critical);
    assert!(
        alert.message.contains("mount: exit 1; demoting"),
        "{}",
        alert.message
    );
    assert_eq!(demotion, &steps_from(full_demotion(), 2).steps[..]);
    assert_eq!(
        kv(&host, "promotion-failed").as_deref(),
        Some("mount: exit 1")
    );
}

#[test]
fn a_failed_promotion_is_not_retried_before_the_next_carp_event() {
    let host = standby()
        .kv("promotion-failed", "fsck: exit 8")
        .kv("desired", "master")
        .kv("settle-pending", "1");
    assert_eq!(run(&host, events::timer("settle")), Plan::none());
    let host = host.now_ms(60_000);
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
    assert_eq!(kv(&host, "promotion-failed"), None);
}

#[test]
fn a_failed_demotion_only_calls_a_human() {
    let host = machine(HastRole::Primary, true, false);
    let plan = run(
        &host,
        step_failed(&full_demotion(), 1, "umount: device busy"),
    );
    let (severity, message) = only_alert(&plan);
    assert_eq!(severity, AlertSeverity::Critical);
    assert!(message.contains("umount -f /hast/test"), "{message}");
    assert!(message.contains("a human must look"), "{message}");
}

#[test]
fn a_settle_timer_that_cannot_be_armed_ends_the_hold_down_now() {
    let host = active().kv("settle-pending", "1").kv("desired", "backup");
    let settle = Plan::builder().set_timer("settle", 5_000).build();
    let plan = run(&host, step_failed(&settle, 0, "too many timers"));
    let (warning, demotion) = plan.steps.split_first().unwrap();
    assert!(matches!(&warning.action, Action::Alert(a) if a.severity == AlertSeverity::Warning));
    assert_eq!(demotion, &full_demotion().steps[..]);
    assert_eq!(kv(&host, "settle-pending"), None);
}

// ---------------------------------------------------------------------------------- settings

#[test]
fn defaults_fill_in_what_is_not_given() {
    let settings = settings(SETTINGS);
    assert_eq!(settings.hold_down_ms, 5_000);
    assert!(settings.force_unmount);
    assert!(!settings.allow_unsynchronised_promotion);
    assert_eq!(settings.timeouts, crate::Timeouts::default());
    assert_eq!(settings.resources[0].device(), DEVICE);
}

#[test]
fn json_from_the_daemon_reads_like_the_toml() {
    let json = r#"{"vhid": 1, "services": ["mysql-server"], "hold-down-ms": 5000,
        "resources": [{"name": "test", "mountpoint": "/hast/test", "fstype": "ufs"}]}"#;
    let from_json: Settings = serde_json::from_str(json).unwrap();
    assert_eq!(from_json, settings(SETTINGS));
}

#[test]
fn unknown_keys_are_rejected() {
    let toml = format!("hold-down = 5\n{SETTINGS}");
    assert!(toml::from_str::<Settings>(&toml).is_err());
}

#[test]
fn bad_settings_are_rejected_with_a_clear_message() {
    let cases = [
        (SETTINGS.replace("vhid = 1", ""), "nothing to follow"),
        (
            SETTINGS.replace("vhid = 1", "vhid = 0"),
            "vhid must be between 1 and 255",
        ),
        (
            "vhid = 1\nresources = []".to_owned(),
            "at least one HAST resource",
        ),
        (
            SETTINGS.replace("\"/hast/test\"", "\"hast/test\""),
            "mountpoint `hast/test` must be",
        ),
        (
            SETTINGS.replace("name = \"test\"", "name = \"te st\""),
            "resource name `te st`",
        ),
        (
            SETTINGS.replace("[\"mysql-server\"]", "[\"a\", \"a\"]"),
            "service `a` appears more",
        ),
        (
            SETTINGS.replace("\"ufs\"", "\"\""),
            "fstype must not be empty",
        ),
        (
            format!("{SETTINGS}device = \"dev/x\""),
            "device `dev/x` must be",
        ),
        (
            format!(
                "{SETTINGS}[[resources]]\nname = \"test\"\nmountpoint = \"/b\"\nfstype = \"ufs\""
            ),
            "resource name `test` appears more than once",
        ),
        (
            format!("{SETTINGS}[timeouts]\nfsck = 0"),
            "timeouts.fsck must be more than 0",
        ),
    ];
    for (toml, expected) in cases {
        let error = CarpHastSwitch::new(settings(&toml)).unwrap_err();
        assert!(
            error.message().contains(expected),
            "{expected:?} not in {error}"
        );
        assert!(error.message().starts_with("invalid settings: "), "{error}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml = SETTINGS
        .replace("vhid = 1", "vhid = 0")
        .replace("\"ufs\"", "\"\"");
    let error = CarpHastSwitch::new(settings(&toml)).unwrap_err();
    assert!(
        error.message().contains("vhid") && error.message().contains("fstype"),
        "{error}"
    );
}

// ------------------------------------------------------------------ what the peer relays

/// The peer `hasta` as primary of `test`, with its replication and dirty count.
fn peer_primary(replication: HastReplication, dirty: u64) -> haven_sdk::PeerFacts {
    haven_sdk::PeerFacts {
        host: "hasta".into(),
        version: "0.1.0".into(),
        carp: Vec::new(),
        hast: vec![HastStatus {
            resource: "test".into(),
            role: HastRole::Primary,
            replication,
            dirty_bytes: Some(dirty),
        }],
        mounts: Vec::new(),
        services: Vec::new(),
        running_plan: None,
        policies: Vec::new(),
        maintenance: false,
        alerts: Vec::new(),
    }
}

/// A standby that hears its primary peer over an up link.
fn standby_hearing(facts: haven_sdk::PeerFacts) -> ScriptedHost {
    standby()
        .peer_link(haven_sdk::PeerLink::Up, 5_000)
        .peer_facts(facts, 100)
        .unix_ms(1_764_876_003_000)
}

#[test]
fn the_peers_relayed_syncintr_refuses_promotion_naming_the_fact_and_when() {
    let host = standby_hearing(peer_primary(HastReplication::Complete, 2_097_152));
    let hook = events::peer_hook(HastHook::SyncInterrupted("test".into()));
    assert!(run(&host, hook).is_none());
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("interrupted"));
    let plan = run(&host, carp(CarpState::Master));
    let (severity, message) = only_alert(&plan);
    assert_eq!(severity, AlertSeverity::Critical);
    assert!(
        message.contains("peer hasta's hastd ran `syncintr` as primary")
            && message.contains("2025-12-04 19:20:03 UTC"),
        "{message}"
    );
}

#[test]
fn a_relayed_syncdone_allows_promotion() {
    let host = standby_hearing(peer_primary(HastReplication::Complete, 0));
    for hook in [
        HastHook::SyncStart("test".into()),
        HastHook::SyncDone("test".into()),
    ] {
        run(&host, events::peer_hook(hook));
    }
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("synced"));
    assert_eq!(run(&host, carp(CarpState::Master)), full_promotion());
}

#[test]
fn a_degraded_primary_with_dirty_bytes_puts_us_behind_and_a_clean_reconnect_in_sync() {
    let host = standby_hearing(peer_primary(HastReplication::Degraded, 4096));
    run(
        &host,
        events::peer_facts(peer_primary(HastReplication::Degraded, 4096)),
    );
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("behind"));
    let plan = run(&host, carp(CarpState::Master));
    let (_, message) = only_alert(&plan);
    assert!(message.contains("4096 dirty bytes"), "{message}");
    // Connected again with nothing left to copy: in sync.
    run(
        &host,
        events::peer_facts(peer_primary(HastReplication::Complete, 0)),
    );
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("synced"));
    // Complete with dirty extents (keepdirty, or a sync running) changes nothing.
    run(
        &host,
        events::peer_facts(peer_primary(HastReplication::Complete, 64 << 20)),
    );
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("synced"));
}

/// hastctl is polled; hooks arrive at once. Status from before a `syncintr` must not undo it.
#[test]
fn stale_status_after_a_relayed_syncintr_does_not_undo_it() {
    let host = standby_hearing(peer_primary(HastReplication::Complete, 0));
    run(
        &host,
        events::peer_hook(HastHook::SyncInterrupted("test".into())),
    );
    run(
        &host,
        events::peer_facts(peer_primary(HastReplication::Complete, 0)),
    );
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("interrupted"));
    // Only the primary's syncdone ends it.
    run(&host, events::peer_hook(HastHook::SyncDone("test".into())));
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("synced"));
}

#[test]
fn an_unknown_copy_is_refused_by_default_and_promoted_when_set() {
    // The link is configured but the peer was never heard, and nothing is recorded.
    let host = standby().peer_link(haven_sdk::PeerLink::Down, 60_000);
    let plan = run(&host, carp(CarpState::Master));
    let (severity, message) = only_alert(&plan);
    assert_eq!(severity, AlertSeverity::Critical);
    assert!(message.contains("never heard"), "{message}");
    // The peer speaks (it is secondary, nothing against our copy): the promotion goes ahead.
    let peer = haven_sdk::PeerFacts {
        hast: Vec::new(),
        ..peer_primary(HastReplication::Complete, 0)
    };
    let heard = host
        .carp(1, "em0", CarpState::Master)
        .peer_facts(peer.clone(), 0);
    assert_eq!(run(&heard, events::peer_facts(peer)), full_promotion());
    assert_eq!(kv(&heard, "sync-waiting-for-peer"), None);
    let host = standby().peer_link(haven_sdk::PeerLink::Down, 60_000);
    let plan = run_with("unknown-copy = \"promote\"", &host, carp(CarpState::Master));
    assert_eq!(plan, full_promotion());
    // No peer link at all: as before it, the hooks this host hears are all it knows.
    assert_eq!(run(&standby(), carp(CarpState::Master)), full_promotion());
}

#[test]
fn lost_state_is_unknown_not_empty() {
    let host = standby_hearing(peer_primary(HastReplication::Complete, 0));
    let lost = Event::Startup(StartupState {
        state_lost: Some(haven_sdk::StateLost {
            reason: "damaged file".into(),
        }),
        ..match startup(None) {
            Event::Startup(state) => state,
            _ => unreachable!(),
        }
    });
    run(&host, lost);
    assert_eq!(kv(&host, "sync:test").as_deref(), Some("unknown"));
    let plan = run(&host, carp(CarpState::Master));
    let (_, message) = only_alert(&plan);
    assert!(message.contains("damaged file"), "{message}");
}

#[test]
fn relayed_hooks_are_ignored_while_this_host_is_primary() {
    let host = active()
        .peer_link(haven_sdk::PeerLink::Up, 1)
        .peer_facts(peer_primary(HastReplication::Complete, 0), 1);
    run(
        &host,
        events::peer_hook(HastHook::SyncInterrupted("test".into())),
    );
    assert_eq!(kv(&host, "sync:test"), None);
}

#[test]
fn utc_formats_civil_dates() {
    assert_eq!(crate::sync::utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(crate::sync::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(
        crate::sync::utc(1_764_876_003_000),
        "2025-12-04 19:20:03 UTC"
    );
}

// ------------------------------------------------------------------- operator requests

/// The peer `hastb` as a secondary backup of vhid 1 that can take over.
fn peer_secondary() -> haven_sdk::PeerFacts {
    let mut facts = peer_primary(HastReplication::Complete, 0);
    facts.host = "hastb".into();
    facts.hast[0].role = HastRole::Secondary;
    facts.carp = vec![haven_sdk::CarpStatus {
        vhid: 1,
        interface: "em0".into(),
        state: CarpState::Backup,
    }];
    facts
}

/// An active master whose peer can take over.
fn active_with_peer(facts: haven_sdk::PeerFacts) -> ScriptedHost {
    active()
        .carp(1, "em0", CarpState::Master)
        .peer_link(haven_sdk::PeerLink::Up, 5_000)
        .peer_facts(facts, 100)
}

fn operator(ask: haven_sdk::OperatorAsk) -> Event {
    events::operator(ask)
}

#[test]
fn a_switchover_demotes_then_hands_carp_to_the_peer() {
    let host = active_with_peer(peer_secondary());
    let plan = run(&host, operator(haven_sdk::OperatorAsk::Switchover(None)));
    let mut expected = full_demotion().steps;
    expected.push(Step {
        action: Action::DemoteCarp(1),
        timeout_ms: None,
    });
    assert_eq!(plan.steps, expected);
    assert_eq!(kv(&host, "carp-demoted").as_deref(), Some("1"));
}

#[test]
fn a_switchover_is_refused_with_the_reason_and_changes_nothing() {
    let behind = {
        let mut host = active_with_peer(peer_secondary());
        host = host.hast(HastStatus {
            resource: "test".into(),
            role: HastRole::Primary,
            replication: HastReplication::Complete,
            dirty_bytes: Some(4096),
        });
        host
    };
    let mut in_maintenance = peer_secondary();
    in_maintenance.maintenance = true;
    let mut busy = peer_secondary();
    busy.running_plan = Some(7);
    let cases = [
        (
            active().carp(1, "em0", CarpState::Master),
            "no peer link is configured",
        ),
        (
            active_with_peer(peer_secondary()).peer_link(haven_sdk::PeerLink::Down, 9_000),
            "the peer is unreachable: its link has been down for 9 s",
        ),
        (behind, "4096 bytes are not replicated yet"),
        (
            active_with_peer(in_maintenance),
            "(hastb) is in maintenance",
        ),
        (active_with_peer(busy), "(hastb) is running plan 7"),
        (
            active_with_peer({
                let mut facts = peer_secondary();
                facts.hast[0].role = HastRole::Init;
                facts
            }),
            "HAST role for `test` is init",
        ),
        (standby(), "this host does not serve"),
    ];
    for (host, reason) in cases {
        let plan = run(&host, operator(haven_sdk::OperatorAsk::Switchover(None)));
        let (severity, message) = only_alert(&plan);
        assert_eq!(severity, AlertSeverity::Warning);
        assert!(
            message.contains(reason),
            "{reason:?} missing from {message:?}"
        );
        assert_eq!(kv(&host, "carp-demoted"), None);
    }
}

#[test]
fn maintenance_on_a_backup_holds_the_demotion_and_refuses_to_promote() {
    let host = standby()
        .carp(1, "em0", CarpState::Backup)
        .peer_link(haven_sdk::PeerLink::Up, 5_000)
        .peer_facts(peer_primary(HastReplication::Complete, 0), 100)
        .kv("sync:test", "synced");
    let plan = run(&host, operator(haven_sdk::OperatorAsk::Maintenance(true)));
    assert_eq!(plan.steps[0].action, Action::DemoteCarp(1));
    // The master dies while the peer link is down: no promotion, a critical alert says why.
    let host = host
        .maintenance(1_764_876_003_000, 0)
        .peer_link(haven_sdk::PeerLink::Down, 4_000);
    let plan = run(&host, carp(CarpState::Master));
    let (severity, message) = only_alert(&plan);
    assert_eq!(severity, AlertSeverity::Critical);
    assert!(
        message.contains("in maintenance (since 2025-12-04"),
        "{message}"
    );
    // Maintenance off: the demotion is lifted and, CARP being master, the host promotes.
    let host = standby()
        .carp(1, "em0", CarpState::Master)
        .peer_link(haven_sdk::PeerLink::Down, 4_000)
        .kv("sync:test", "synced");
    let plan = run(&host, operator(haven_sdk::OperatorAsk::Maintenance(false)));
    assert_eq!(plan.steps[0].action, Action::LiftCarpDemotion(1));
    assert_eq!(steps_from(plan, 1), full_promotion());
}

#[test]
fn an_accepted_incomplete_copy_is_promoted_once_with_a_warning() {
    let host = standby()
        .carp(1, "em0", CarpState::Master)
        .kv("sync:test", "interrupted");
    let refused = run(&host, carp(CarpState::Master));
    assert_eq!(only_alert(&refused).0, AlertSeverity::Critical);
    let ask = haven_sdk::OperatorAsk::AcceptIncomplete("test".into());
    let plan = run(&host, operator(ask.clone()));
    let Action::Alert(alert) = &plan.steps[0].action else {
        panic!("{plan:?}")
    };
    assert_eq!(alert.severity, AlertSeverity::Warning);
    assert!(
        alert.message.contains("(interrupted: "),
        "{}",
        alert.message
    );
    assert!(alert.message.contains("by uid 0"), "{}", alert.message);
    assert_eq!(steps_from(plan, 1), full_promotion());
    // Nothing is kept for a later decision.
    assert!(
        host.kv_snapshot().keys().all(|key| !key.contains("accept")),
        "{:?}",
        host.kv_snapshot()
    );
    // With CARP backup there is nothing to accept.
    let backup = standby().carp(1, "em0", CarpState::Backup);
    let plan = run(&backup, operator(ask));
    assert!(only_alert(&plan).1.contains("changes nothing"));
}
