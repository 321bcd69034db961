//! `demote-carp` and `lift-carp-demotion` on each CARP implementation:
//!
//! - keepalived's `track_file`, written for real in a temporary folder;
//! - FreeBSD's `ifconfig`, through a stand-in (test code only) that takes what
//!   sbin/ifconfig/ifcarp.c takes (`<if> vhid N [advskew S] [state master|backup]`, the state
//!   matched without case as `setcarp_state` does, an advskew of 255 or more refused with
//!   EINVAL as `carp_ioctl_set` in sys/netinet/ip_carp.c does) and prints what `carp_status`
//!   prints (`\tcarp: STATE vhid N advbase B advskew S`), keeping the state in files;
//! - a real ucarp in a network namespace (root only; skipped, saying so, otherwise), which
//!   must run its down script when `SIGUSR2` reaches it as master.

use haven_core::{Action, Config, Machine, Step};
use haven_executor::{Executor, Platform, StepOutcome, SystemExecutor};
use haven_test_artifacts::support::write_script;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous bound for ucarp's elections.
const DEADLINE: Duration = Duration::from_secs(20);

fn step(action: Action) -> Step {
    Step {
        action,
        timeout_ms: None,
    }
}

fn run(executor: &mut SystemExecutor, action: Action) -> StepOutcome {
    executor.run_step("p", &step(action), &Machine::default())
}

/// An executor for `platform` from a config with these `[[carp]]` entries and tools.
fn executor(platform: Platform, text: &str) -> SystemExecutor {
    let config = Config::parse(text, Path::new("haven.toml")).unwrap();
    SystemExecutor::new(platform, &config.executor)
        .unwrap()
        .with_carp(&config.carp)
}

#[test]
fn keepalived_track_file_is_written_once_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("haven-demote-1");
    let mut executor = executor(
        Platform::Linux,
        &format!(
            "[[carp]]\nvhid = 1\ninterface = \"eth0\"\naddress = \"10.0.0.50\"\n\
             keepalived-track-file = \"{}\"\n",
            file.display()
        ),
    );
    let demoted = run(&mut executor, Action::DemoteCarp(1));
    assert!(demoted.ok() && !demoted.skipped_as_done, "{demoted:?}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "1\n");
    let again = run(&mut executor, Action::DemoteCarp(1));
    assert!(again.ok() && again.skipped_as_done, "{again:?}");
    let lifted = run(&mut executor, Action::LiftCarpDemotion(1));
    assert!(lifted.ok() && !lifted.skipped_as_done, "{lifted:?}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "0\n");
    assert!(run(&mut executor, Action::LiftCarpDemotion(1)).skipped_as_done);
    // A vhid without a [[carp]] entry fails, naming it, and touches nothing.
    let unknown = run(&mut executor, Action::DemoteCarp(2));
    assert!(
        unknown
            .result
            .as_ref()
            .is_err_and(|why| why.contains("vhid 2 has no [[carp]] entry")),
        "{unknown:?}"
    );
}

/// The FreeBSD ifconfig stand-in (see the module docs).
const IFCONFIG: &str = r#"#!/bin/sh
dir=${0%/*}
{ printf 'ifconfig'; for arg in "$@"; do printf ' %s' "$arg"; done; printf '\n'; } >>"$dir/log"
[ "$1" = em0 ] || { echo "ifconfig: interface $1 does not exist" >&2; exit 1; }
if [ $# -eq 1 ]; then
    printf 'em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n'
    printf '\tinet 192.168.1.51 netmask 0xffffff00 broadcast 192.168.1.255\n'
    printf '\tcarp: %s vhid 1 advbase 1 advskew %s\n' "$(cat "$dir/state")" "$(cat "$dir/advskew")"
    exit 0
fi
shift
[ "$1" = vhid ] && [ "$2" = 1 ] || { echo "ifconfig: SIOCSVH: Invalid argument" >&2; exit 1; }
shift 2
while [ $# -ge 2 ]; do
    case "$1" in
    advskew)
        [ "$2" -lt 255 ] || { echo "ifconfig: SIOCSVH: Invalid argument" >&2; exit 1; }
        echo "$2" >"$dir/advskew" ;;
    state)
        case "$(echo "$2" | tr a-z A-Z)" in
        MASTER|BACKUP) echo "$2" | tr a-z A-Z >"$dir/state" ;;
        *) echo "ifconfig: unknown state" >&2; exit 1 ;;
        esac ;;
    *) echo "ifconfig: $1: bad value" >&2; exit 1 ;;
    esac
    shift 2
done
"#;

#[test]
fn freebsd_demotes_with_advskew_and_state_backup_and_lifts_to_the_configured_advskew() {
    let dir = tempfile::tempdir().unwrap();
    let ifconfig = dir.path().join("ifconfig");
    write_script(&ifconfig, IFCONFIG);
    fs::write(dir.path().join("state"), "MASTER\n").unwrap();
    fs::write(dir.path().join("advskew"), "100\n").unwrap();
    let mut executor = executor(
        Platform::FreeBsd,
        &format!(
            "[[carp]]\nvhid = 1\ninterface = \"em0\"\naddress = \"192.168.1.50\"\nadvskew = 100\n\
             [executor.tools]\nifconfig = \"{}\"\n",
            ifconfig.display()
        ),
    );
    let log = || fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    let demoted = run(&mut executor, Action::DemoteCarp(1));
    assert!(demoted.ok() && !demoted.skipped_as_done, "{demoted:?}");
    assert_eq!(
        log(),
        "ifconfig em0\nifconfig em0 vhid 1 advskew 240 state backup\n"
    );
    let again = run(&mut executor, Action::DemoteCarp(1));
    assert!(again.ok() && again.skipped_as_done, "{again:?}");
    let lifted = run(&mut executor, Action::LiftCarpDemotion(1));
    assert!(lifted.ok() && !lifted.skipped_as_done, "{lifted:?}");
    assert!(
        log().ends_with("ifconfig em0\nifconfig em0 vhid 1 advskew 100\n"),
        "{}",
        log()
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("state")).unwrap(),
        "BACKUP\n",
        "lifting never forces a state"
    );
    assert!(run(&mut executor, Action::LiftCarpDemotion(1)).skipped_as_done);
}

/// A network namespace with a ucarp in it; both gone when dropped.
struct UcarpNamespace {
    name: String,
    ucarp: Option<Child>,
}

impl Drop for UcarpNamespace {
    fn drop(&mut self) {
        if let Some(mut ucarp) = self.ucarp.take() {
            let _ = ucarp.kill();
            let _ = ucarp.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|output| output.status.success())
}

#[test]
fn ucarp_as_master_goes_backup_on_sigusr2_and_runs_its_down_script() {
    let have = |program: &str| Path::new("/usr/sbin").join(program).exists();
    if !nix::unistd::geteuid().is_root() || !have("ucarp") || !(have("ip") || ip(&["-V"])) {
        println!("skipped: needs root, ucarp and ip");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    for (script, word) in [("up", "up"), ("down", "down")] {
        write_script(
            &dir.path().join(script),
            &format!("#!/bin/sh\necho {word} >>{}\n", events.display()),
        );
    }
    let mut namespace = UcarpNamespace {
        name: format!("haven-ucarp-{}", std::process::id()),
        ucarp: None,
    };
    assert!(ip(&["netns", "add", &namespace.name]));
    let ns = namespace.name.clone();
    let inside = |args: &[&str]| {
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    };
    assert!(inside(&["link", "set", "lo", "up"]));
    if !inside(&["link", "add", "hv0", "type", "dummy"]) {
        assert!(inside(&[
            "link", "add", "hv0", "type", "veth", "peer", "name", "hv1"
        ]));
        assert!(inside(&["link", "set", "hv1", "up"]));
    }
    assert!(inside(&["link", "set", "hv0", "up"]));
    assert!(inside(&["addr", "add", "10.204.0.1/24", "dev", "hv0"]));
    let up = format!("--upscript={}", dir.path().join("up").display());
    let down = format!("--downscript={}", dir.path().join("down").display());
    namespace.ucarp = Some(
        Command::new("ip")
            .args(["netns", "exec", &ns, "ucarp", "--interface=hv0"])
            .args(["--srcip=10.204.0.1", "--vhid=7", "--pass=pw"])
            .args(["--addr=10.204.0.50", "--advbase=1", &up, &down])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let said = |word: &str| {
        fs::read_to_string(&events).is_ok_and(|text| text.lines().any(|line| line == word))
    };
    let started = Instant::now();
    while !said("up") {
        assert!(started.elapsed() < DEADLINE, "ucarp never became master");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut executor = executor(
        Platform::Linux,
        "[[carp]]\nvhid = 7\ninterface = \"hv0\"\naddress = \"10.204.0.50\"\n",
    );
    let demoted = run(&mut executor, Action::DemoteCarp(7));
    assert!(demoted.ok(), "{demoted:?}");
    assert!(
        demoted
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("SIGUSR2")),
        "{demoted:?}"
    );
    let started = Instant::now();
    while !said("down") {
        assert!(started.elapsed() < DEADLINE, "ucarp never went backup");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ucarp keeps no demotion: there is nothing to lift.
    assert!(run(&mut executor, Action::LiftCarpDemotion(7)).skipped_as_done);
    // Another vhid has no ucarp: the step fails, saying so.
    let mut other = executor_for_missing();
    let missing = run(&mut other, Action::DemoteCarp(8));
    assert!(
        missing
            .result
            .as_ref()
            .is_err_and(|why| why.contains("no ucarp process for vhid 8")),
        "{missing:?}"
    );
}

fn executor_for_missing() -> SystemExecutor {
    executor(
        Platform::Linux,
        "[[carp]]\nvhid = 8\ninterface = \"hv9\"\naddress = \"10.204.9.50\"\n",
    )
}
