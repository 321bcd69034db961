use super::mounts::{FsckVerdict, fsck_verdict};
use super::storage::{parse_drbd_role, ps_line_is, worker_title};
use super::*;
use haven_core::{ExecutorTools, HastRole};

#[test]
fn drbd_roles_of_both_generations() {
    assert_eq!(parse_drbd_role("Primary\n"), Some(HastRole::Primary));
    assert_eq!(parse_drbd_role("Secondary\n"), Some(HastRole::Secondary));
    assert_eq!(
        parse_drbd_role("Primary/Secondary\n"),
        Some(HastRole::Primary)
    );
    assert_eq!(
        parse_drbd_role("Secondary/Unknown\n"),
        Some(HastRole::Secondary)
    );
    assert_eq!(
        parse_drbd_role("\n  Secondary/Primary  \n"),
        Some(HastRole::Secondary)
    );
    assert_eq!(parse_drbd_role("Unknown\n"), None);
    assert_eq!(parse_drbd_role(""), None);
    assert_eq!(parse_drbd_role("r0: no such resource\n"), None);
}

#[test]
fn worker_titles_match_exactly() {
    let title = worker_title("test", HastRole::Secondary);
    assert_eq!(title, "hastd: test (secondary)");
    // FreeBSD's ps appends the command name when the title does not start with it.
    for yes in [
        "hastd: test (secondary)",
        "hastd: test (secondary) (hastd)",
        "  hastd: test (secondary) (hastd)  ",
    ] {
        assert!(ps_line_is(yes, &title), "{yes}");
    }
    for no in [
        "hastd: test (primary) (hastd)",
        "hastd: test2 (secondary) (hastd)",
        "hastd: test (secondary) (hastd) extra",
        "hastd: test (secondary) (a b)",
        "hastd: test (secondary) ()",
        "/usr/bin/grep hastd: test (secondary)",
        "hastd: test (secondary)x",
        "hastd: test secondary",
    ] {
        assert!(!ps_line_is(no, &title), "{no}");
    }
}

#[test]
fn fsck_statuses_per_platform() {
    assert_eq!(fsck_verdict(Platform::Linux, Some(0)), FsckVerdict::Clean);
    assert_eq!(
        fsck_verdict(Platform::Linux, Some(1)),
        FsckVerdict::Corrected
    );
    assert_eq!(
        fsck_verdict(Platform::Linux, Some(4)),
        FsckVerdict::Failed(Some("errors left uncorrected".into()))
    );
    assert_eq!(
        fsck_verdict(Platform::Linux, Some(3)),
        FsckVerdict::Failed(Some(
            "errors corrected, the system should be rebooted".into()
        ))
    );
    assert_eq!(
        fsck_verdict(Platform::Linux, Some(8)),
        FsckVerdict::Failed(Some("operational error".into()))
    );
    assert_eq!(
        fsck_verdict(Platform::Linux, None),
        FsckVerdict::Failed(None)
    );
    assert_eq!(fsck_verdict(Platform::FreeBsd, Some(0)), FsckVerdict::Clean);
    // FreeBSD's fsck has no "corrected" status: anything but 0 is a failure.
    assert!(matches!(
        fsck_verdict(Platform::FreeBsd, Some(1)),
        FsckVerdict::Failed(None)
    ));
    assert!(matches!(
        fsck_verdict(Platform::FreeBsd, Some(8)),
        FsckVerdict::Failed(Some(meaning)) if meaning.contains("unexpected inconsistency")
    ));
}

#[test]
fn tools_default_per_platform_and_take_the_config() {
    let freebsd = Tools::defaults(Platform::FreeBsd);
    assert_eq!(freebsd.hastctl, Path::new("/sbin/hastctl"));
    assert_eq!(freebsd.mount, Path::new("/sbin/mount"));
    assert_eq!(freebsd.umount, Path::new("/sbin/umount"));
    assert_eq!(freebsd.fsck, Path::new("/sbin/fsck"));
    assert_eq!(freebsd.service, Path::new("/usr/sbin/service"));
    assert_eq!(freebsd.ps, Path::new("/bin/ps"));
    let linux = Tools::defaults(Platform::Linux);
    assert_eq!(linux.mount, Path::new("/usr/bin/mount"));
    assert_eq!(linux.umount, Path::new("/usr/bin/umount"));
    assert_eq!(linux.fsck, Path::new("/usr/sbin/fsck"));
    assert_eq!(linux.systemctl, Path::new("/usr/bin/systemctl"));
    assert_eq!(linux.drbdadm, Path::new("/usr/sbin/drbdadm"));
    assert_eq!(linux.hastctl, Path::new("/usr/local/sbin/hastctl"));
    let configured = ExecutorTools {
        hastctl: Some(PathBuf::from("/opt/bin/hastctl")),
        ..ExecutorTools::default()
    };
    let tools = Tools::resolve(Platform::Linux, &configured);
    assert_eq!(tools.hastctl, Path::new("/opt/bin/hastctl"));
    assert_eq!(tools.mount, linux.mount);
}

#[test]
fn impossible_setups_are_refused() {
    let drbd = ExecutorConfig {
        storage: StorageKind::Drbd,
        ..ExecutorConfig::default()
    };
    let error = SystemExecutor::new(Platform::FreeBsd, &drbd).unwrap_err();
    assert!(error.to_string().contains("DRBD is Linux's"), "{error}");
    assert!(SystemExecutor::new(Platform::Linux, &drbd).is_ok());

    for kind in [ServiceManagerKind::Systemd, ServiceManagerKind::Sysv] {
        let config = ExecutorConfig {
            service_manager: kind,
            ..ExecutorConfig::default()
        };
        let error = SystemExecutor::new(Platform::FreeBsd, &config).unwrap_err();
        assert!(error.to_string().contains("rc(8) scripts"), "{error}");
        assert!(SystemExecutor::new(Platform::Linux, &config).is_ok());
    }
    let rc = ExecutorConfig {
        service_manager: ServiceManagerKind::Rc,
        ..ExecutorConfig::default()
    };
    let error = SystemExecutor::new(Platform::Linux, &rc).unwrap_err();
    assert!(error.to_string().contains("FreeBSD's"), "{error}");

    let freebsd = SystemExecutor::new(Platform::FreeBsd, &ExecutorConfig::default()).unwrap();
    assert_eq!(freebsd.service_manager(), ServiceManager::Rc);
    assert_eq!(freebsd.name(), "freebsd");
    assert!(freebsd.acts_on_system());
    let linux = SystemExecutor::new(Platform::Linux, &ExecutorConfig::default()).unwrap();
    assert_eq!(linux.name(), "linux");
    let expected = if Path::new("/run/systemd/system").is_dir() {
        ServiceManager::Systemd
    } else {
        ServiceManager::SysV
    };
    assert_eq!(linux.service_manager(), expected);
}

#[test]
fn timeouts_come_from_the_step_or_the_kind() {
    let mut config = ExecutorConfig::default();
    config.timeouts_ms.insert("fsck".into(), 1234);
    let executor = SystemExecutor::new(Platform::Linux, &config).unwrap();
    let step = |line: &str| line.parse::<Step>().unwrap();
    assert_eq!(
        executor.timeout_of(&step("fsck ext4 /dev/sdb1 preen")),
        Some(Duration::from_millis(1234))
    );
    assert_eq!(
        executor.timeout_of(&step("fsck ext4 /dev/sdb1 preen timeout=50")),
        Some(Duration::from_millis(50))
    );
    assert_eq!(
        executor.timeout_of(&step("hast-role test primary")),
        Some(Duration::from_secs(30))
    );
    assert_eq!(executor.timeout_of(&step("set-timer settle 10")), None);
}

#[test]
fn host_side_steps_run_nothing() {
    let mut executor = SystemExecutor::new(Platform::Linux, &ExecutorConfig::default()).unwrap();
    for line in [
        "set-timer settle 500",
        "cancel-timer settle",
        "alert critical split-brain on test",
    ] {
        let outcome = executor.run_step("p", &line.parse().unwrap(), &Machine::default());
        assert_eq!(outcome, StepOutcome::done(None), "{line}");
    }
    assert_eq!(executor.commands_run() + executor.probes_run(), 0);
}

#[test]
fn human_durations() {
    assert_eq!(human(Duration::from_micros(400)), "0.4 ms");
    assert_eq!(human(Duration::from_millis(12)), "12 ms");
    assert_eq!(human(Duration::from_millis(3200)), "3200 ms");
    assert_eq!(human(Duration::from_secs(12)), "12.0 s");
}
