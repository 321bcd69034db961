//! The HAST stand-ins on their own, without namespaces: two `hastd`s ("hasta" and "hastb")
//! sharing a temporary folder, each with its own control socket and provider folder, driven
//! with the stand-in `hastctl`; and `contrib/hast/hast-hook` with a fake havenctl. The rig
//! relies on what is checked here: hastctl's formats and errors (read by haven-sources'
//! parser), the provider node in role primary only, the refusal of a second primary, the
//! workers' titles and lifetimes, the hooks' arguments, and a clean SIGTERM.
//!
//! Making device nodes needs root; those tests say so and pass without it.

#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use haven_core::{HastReplication, HastRole, HastStatus};
use haven_e2e::hast_standin::{CONTROL_ENV, request};
use haven_sources::parse_hastctl_list;
use haven_test_artifacts::support::{run_once, wait_until, write_script};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{Pid, Uid};
use tempfile::TempDir;

const HASTD: &str = env!("CARGO_BIN_EXE_hastd");
const HASTCTL: &str = env!("CARGO_BIN_EXE_hastctl");

/// The hook every hastd here runs: it appends its arguments to `$HOOK_LOG`.
const HOOK: &str =
    "#!/bin/sh\n[ -n \"${HOOK_LOG:-}\" ] || exit 0\nprintf '%s\\n' \"$*\" >> \"$HOOK_LOG\"\n";

/// Whether device nodes can be made; if not, the caller returns (and says why).
fn root() -> bool {
    let root = Uid::effective().is_root();
    if !root {
        eprintln!("skipped: making device nodes needs root");
    }
    root
}

/// The shared folder, a block device node standing for the local device, and the hook.
struct Rig {
    dir: TempDir,
    local: PathBuf,
    hook: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().expect("temporary folder");
        let local = dir.path().join("loop");
        // The node is never opened: any block device number will do (loop0's).
        mknod(
            &local,
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o600),
            makedev(7, 0),
        )
        .expect("mknod (needs root)");
        let hook = dir.path().join("hook");
        write_script(&hook, HOOK);
        run_once(&hook);
        Rig { dir, local, hook }
    }

    /// Start `host`'s hastd for `resource`, peer `peer`, and wait until it answers.
    fn start(&self, host: &str, peer: &str, resource: &str) -> Hastd {
        let home = self.dir.path().join(host);
        let dev_dir = home.join("dev-hast");
        fs::create_dir_all(&dev_dir).expect("host folder");
        let control = home.join("hastctl");
        let hook_log = home.join("hooks.log");
        let peer_address = if host == "hasta" {
            "10.73.0.2"
        } else {
            "10.73.0.1"
        };
        let child = Command::new(HASTD)
            .args([
                "--host",
                host,
                "--peer",
                peer,
                "--peer-address",
                peer_address,
            ])
            .args(["--resource", resource])
            .arg("--local")
            .arg(&self.local)
            .arg("--shared-dir")
            .arg(self.dir.path().join("shared"))
            .arg("--exec")
            .arg(&self.hook)
            .arg("--control")
            .arg(&control)
            .arg("--dev-dir")
            .arg(&dev_dir)
            .env("HOOK_LOG", &hook_log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start hastd");
        let hastd = Hastd {
            child,
            control,
            dev_dir,
            hook_log,
            resource: resource.to_owned(),
        };
        wait_until(&format!("{host}'s hastd answers"), || {
            request(&hastd.control, "status all").is_ok()
        });
        hastd
    }
}

/// A running hastd: killed (SIGKILL) and reaped when dropped, also on panic.
struct Hastd {
    child: Child,
    control: PathBuf,
    dev_dir: PathBuf,
    hook_log: PathBuf,
    resource: String,
}

impl Drop for Hastd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hastd {
    /// Run the stand-in hastctl against this hastd.
    fn hastctl(&self, args: &[&str]) -> Output {
        Command::new(HASTCTL)
            .args(args)
            .env(CONTROL_ENV, &self.control)
            .output()
            .expect("run hastctl")
    }

    /// `hastctl <args>`, which must succeed and print nothing on stderr; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.hastctl(args);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "hastctl {args:?}: {output:?}"
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// `hastctl list <res>` read by Haven's parser.
    fn parsed(&self) -> HastStatus {
        let text = self.ok(&["list", &self.resource]);
        let mut statuses = parse_hastctl_list(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(statuses.len(), 1, "{text}");
        statuses.remove(0)
    }

    /// `/dev/hast/<res>` here.
    fn provider(&self) -> PathBuf {
        self.dev_dir.join(&self.resource)
    }

    /// The hook's invocations so far, in the order they were logged.
    fn hooks(&self) -> Vec<String> {
        match fs::read_to_string(&self.hook_log) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", self.hook_log.display()),
        }
    }

    /// Wait until the hook has run with each of `lines` (hooks run concurrently, so their
    /// order is not fixed).
    fn wait_hooks(&self, lines: &[&str]) {
        wait_until(&format!("hooks {lines:?} ran"), || {
            let hooks = self.hooks();
            lines.iter().all(|line| hooks.iter().any(|h| h == line))
        });
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }
}

/// The pids of processes whose command line, NULs made spaces and trimmed, is `title`: how
/// Haven's Linux executor finds `hastd: <res> (<role>)`.
fn processes(title: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.trim() == title {
            pids.push(pid);
        }
    }
    pids
}

fn worker(resource: &str, role: &str) -> Vec<u32> {
    processes(&format!("hastd: {resource} ({role})"))
}

/// The block that `hastctl list` prints after the `status`/`workerpid` lines.
fn statistics() -> &'static str {
    "  statistics:
    reads: 0
    writes: 0
    deletes: 0
    flushes: 0
    activemap updates: 0
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0
"
}

fn status(
    resource: &str,
    role: HastRole,
    replication: HastReplication,
    dirty: Option<u64>,
) -> HastStatus {
    HastStatus {
        resource: resource.to_owned(),
        role,
        replication,
        dirty_bytes: dirty,
    }
}

#[test]
fn list_and_status_follow_the_roles_and_the_peer() {
    if !root() {
        return;
    }
    let rig = Rig::new();
    let a = rig.start("hasta", "hastb", "fmt");
    let local = rig.local.display().to_string();

    // Role init: no worker, so no status or workerpid, and extentsize/keepdirty 0.
    assert_eq!(
        a.ok(&["list", "fmt"]),
        format!(
            "fmt:\n  role: init\n  provname: fmt\n  localpath: {local}\n  extentsize: 0 (0B)\n  \
             keepdirty: 0\n  remoteaddr: 10.73.0.2\n  replication: memsync\n  dirty: 0 (0B)\n{}",
            statistics()
        )
    );
    assert_eq!(
        a.ok(&["status"]),
        format!(
            "Name\tStatus\t Role\t\tComponents\nfmt\t-        init           {local}\t10.73.0.2\n"
        )
    );
    assert_eq!(
        a.parsed(),
        status("fmt", HastRole::Init, HastReplication::Unknown, None)
    );
    assert!(!a.provider().exists());

    // Primary without a peer: degraded, with a worker and the provider node.
    assert_eq!(a.ok(&["role", "primary", "fmt"]), "");
    let primary = worker("fmt", "primary");
    assert_eq!(primary.len(), 1, "one primary worker");
    assert_eq!(
        a.ok(&["list"]),
        format!(
            "fmt:\n  role: primary\n  provname: fmt\n  localpath: {local}\n  \
             extentsize: 2097152 (2.0MB)\n  keepdirty: 64\n  remoteaddr: 10.73.0.2\n  \
             replication: memsync\n  status: degraded\n  workerpid: {}\n  dirty: 0 (0B)\n{}",
            primary[0],
            statistics()
        )
    );
    assert_eq!(
        a.ok(&["status", "fmt"]),
        format!(
            "Name\tStatus\t Role\t\tComponents\nfmt\tdegraded primary        {local}\t10.73.0.2\n"
        )
    );
    assert_eq!(
        a.parsed(),
        status("fmt", HastRole::Primary, HastReplication::Degraded, Some(0))
    );
    let node = fs::metadata(a.provider()).expect("the provider exists in role primary");
    assert!(node.file_type().is_block_device(), "a block device node");
    assert_eq!(node.rdev(), fs::metadata(&rig.local).unwrap().rdev());
    assert_eq!(node.permissions().mode() & 0o7777, 0o600);

    // The peer comes up as secondary: both complete; the secondary has its worker.
    let b = rig.start("hastb", "hasta", "fmt");
    assert_eq!(
        b.parsed(),
        status("fmt", HastRole::Init, HastReplication::Unknown, None)
    );
    b.ok(&["role", "secondary", "all"]);
    wait_until("the primary sees the secondary", || {
        a.parsed().replication == HastReplication::Complete
    });
    wait_until("the secondary's worker runs", || {
        worker("fmt", "secondary").len() == 1
    });
    let text = b.ok(&["list", "all"]);
    assert!(text.contains("  role: secondary\n"), "{text}");
    assert!(text.contains("  keepdirty: 0\n"), "{text}");
    assert!(text.contains("  status: complete\n"), "{text}");
    let secondary = worker("fmt", "secondary")[0];
    assert!(
        text.contains(&format!("  workerpid: {secondary}\n")),
        "{text}"
    );
    // Haven keeps `dirty` for a primary only.
    assert_eq!(
        b.parsed(),
        status("fmt", HastRole::Secondary, HastReplication::Complete, None)
    );
    assert!(!b.provider().exists());

    // The rig's requests: the copy falls behind, then catches up.
    request(&a.control, "sync-interrupted fmt").expect("sync-interrupted");
    assert!(a.ok(&["list"]).contains("  dirty: 2097152 (2.0MB)\n"));
    assert_eq!(a.parsed().dirty_bytes, Some(2_097_152));
    request(&a.control, "sync-interrupted fmt 4194304").expect("sync-interrupted with bytes");
    assert!(a.ok(&["list"]).contains("  dirty: 4194304 (4.0MB)\n"));
    request(&a.control, "sync-done fmt").expect("sync-done");
    assert_eq!(a.parsed().dirty_bytes, Some(0));
    a.wait_hooks(&["syncintr fmt", "syncdone fmt"]);
    let refused = request(&a.control, "sync-done other").unwrap_err();
    assert!(refused.contains("error 1"), "{refused}");

    // Unknown resources, as hastd answers them (EHAST_NOENTRY).
    let output = a.hastctl(&["list", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "nope:\n  error: 1\n"
    );
    let output = a.hastctl(&["status", "fmt", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout).ends_with("\nnope\tERR1\n"),
        "{output:?}"
    );

    // Back to init: the provider and both workers go (the secondary's lost its primary).
    a.ok(&["role", "init", "fmt"]);
    assert!(!a.provider().exists());
    assert!(worker("fmt", "primary").is_empty());
    wait_until("the secondary's worker exits", || {
        worker("fmt", "secondary").is_empty()
    });
    wait_until("the secondary sees no primary", || {
        b.parsed().replication == HastReplication::Unknown
    });
}

#[test]
fn primary_is_refused_while_the_peer_is_primary_and_allowed_once_it_dies() {
    if !root() {
        return;
    }
    let rig = Rig::new();
    let mut a = rig.start("hasta", "hastb", "fo");
    let b = rig.start("hastb", "hasta", "fo");
    a.ok(&["role", "primary", "fo"]);
    b.ok(&["role", "secondary", "fo"]);
    wait_until("the secondary's worker runs", || {
        worker("fo", "secondary").len() == 1
    });

    let output = b.hastctl(&["role", "primary", "fo"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("[WARNING] [fo] Received error 2 from hastd.\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("peer hasta is alive and primary"),
        "{stderr}"
    );
    assert_eq!(b.parsed().role, HastRole::Secondary);
    assert!(!b.provider().exists());

    // The primary's host dies: its worker goes with it, and so does the secondary's.
    a.child.kill().expect("SIGKILL hastd");
    a.child.wait().expect("reap hastd");
    wait_until("the secondary's worker exits", || {
        worker("fo", "secondary").is_empty()
    });
    wait_until("the dead primary's worker exits", || {
        worker("fo", "primary").is_empty()
    });
    b.wait_hooks(&["disconnect fo"]);

    assert_eq!(b.ok(&["role", "primary", "fo"]), "");
    assert!(
        fs::metadata(b.provider())
            .unwrap()
            .file_type()
            .is_block_device()
    );
    assert_eq!(
        b.parsed(),
        status("fo", HastRole::Primary, HastReplication::Degraded, Some(0))
    );
    assert_eq!(worker("fo", "primary").len(), 1);
}

/// What only a primary knows, as hastd tells it (control.c, primary.c, secondary.c,
/// hastd.c): the sync hooks run on the primary only, a secondary's list always says `dirty`
/// and `keepdirty` 0, `status` stays `complete` through a sync, and a worker that fails on
/// its local disk drops the role to init with no hook at all.
#[test]
fn only_the_primary_knows_the_sync_and_a_failed_worker_drops_to_init_silently() {
    if !root() {
        return;
    }
    let rig = Rig::new();
    let a = rig.start("hasta", "hastb", "tr");
    let b = rig.start("hastb", "hasta", "tr");
    b.ok(&["role", "secondary", "tr"]);
    a.ok(&["role", "primary", "tr"]);
    a.wait_hooks(&["role tr init primary", "connect tr"]);
    b.wait_hooks(&["role tr init secondary", "connect tr"]);

    // A sync starts: the primary is 8 MiB ahead, and the link stays complete.
    request(&a.control, "sync-start tr 8388608").expect("sync-start on the primary");
    assert_eq!(
        a.parsed(),
        status(
            "tr",
            HastRole::Primary,
            HastReplication::Complete,
            Some(8_388_608)
        )
    );
    a.wait_hooks(&["syncstart tr"]);
    // The secondary's copy is behind, and its hastd says nothing of it.
    let listed = b.ok(&["list", "tr"]);
    assert!(listed.contains("  keepdirty: 0\n  "), "{listed}");
    assert!(listed.contains("  dirty: 0 (0B)\n"), "{listed}");
    assert!(listed.contains("  status: complete\n"), "{listed}");
    // Sync events exist on the primary only: the rig cannot fake them on the secondary.
    for asked in ["sync-start tr", "sync-interrupted tr", "sync-done tr"] {
        let refused = request(&b.control, asked).unwrap_err();
        assert!(refused.contains("primary only"), "{asked}: {refused}");
    }
    request(&a.control, "sync-interrupted tr").expect("sync-interrupted on the primary");
    a.wait_hooks(&["syncintr tr"]);
    assert_eq!(a.parsed().dirty_bytes, Some(2_097_152));
    let b_hooks = b.hooks();
    assert!(
        b_hooks.iter().all(|hook| !hook.starts_with("sync")),
        "the secondary ran a sync hook: {b_hooks:?}"
    );

    // The primary's worker fails on its disk: role init, no provider, and no hook.
    let before = a.hooks().len();
    request(&a.control, "disk-error tr").expect("disk-error");
    wait_until("the primary drops to init", || {
        a.parsed().role == HastRole::Init
    });
    assert!(!a.provider().exists(), "the provider outlived the worker");
    assert!(
        worker("tr", "primary").is_empty(),
        "a primary worker still runs"
    );
    b.wait_hooks(&["disconnect tr"]);
    // The peer saw the drop after hasta would have started any hook.
    let hooks = a.hooks();
    assert!(
        hooks.len() == before,
        "hastd runs no hook when a worker dies: {:?}",
        &hooks[before..]
    );
}

#[test]
fn hooks_get_hastds_arguments() {
    if !root() {
        return;
    }
    let rig = Rig::new();
    let a = rig.start("hasta", "hastb", "hk");
    let b = rig.start("hastb", "hasta", "hk");
    a.ok(&["role", "secondary", "hk"]);
    a.wait_hooks(&["role hk init secondary"]);
    b.ok(&["role", "primary", "hk"]);
    b.wait_hooks(&["role hk init primary", "connect hk"]);
    a.wait_hooks(&["connect hk"]);
    // The role is unchanged: no hook.
    b.ok(&["role", "primary", "hk"]);
    request(&b.control, "sync-start hk").expect("sync-start");
    request(&b.control, "split-brain hk").expect("split-brain");
    b.ok(&["role", "secondary", "hk"]);
    let b_expected = [
        "role hk init primary",
        "connect hk",
        "syncstart hk",
        "split-brain hk",
        "role hk primary secondary",
        "disconnect hk",
    ];
    b.wait_hooks(&b_expected);
    let a_expected = ["role hk init secondary", "connect hk", "disconnect hk"];
    a.wait_hooks(&a_expected);

    let sorted = |mut lines: Vec<String>| {
        lines.sort();
        lines
    };
    let owned = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert_eq!(sorted(b.hooks()), sorted(owned(&b_expected)));
    assert_eq!(sorted(a.hooks()), sorted(owned(&a_expected)));
}

#[test]
fn sigterm_removes_the_socket_and_the_provider() {
    if !root() {
        return;
    }
    let rig = Rig::new();
    let mut a = rig.start("hasta", "hastb", "tm");
    a.ok(&["role", "primary", "tm"]);
    assert!(a.provider().exists());
    kill(a.pid(), Signal::SIGTERM).expect("SIGTERM");
    let child = std::cell::RefCell::new(&mut a.child);
    wait_until("hastd exits", || {
        child.borrow_mut().try_wait().expect("try_wait").is_some()
    });
    let status = child.into_inner().wait().expect("reap hastd");
    assert!(status.success(), "{status:?}");
    assert!(!a.control.exists(), "the control socket is removed");
    assert!(!a.provider().exists(), "the provider is removed");
    wait_until("the worker exits", || worker("tm", "primary").is_empty());

    // hastctl now fails to connect, as real hastctl does.
    let output = a.hastctl(&["status"]);
    assert_eq!(output.status.code(), Some(71));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "[ERROR] Unable to connect to hastd via uds://{}: No such file or directory.\n",
            a.control.display()
        )
    );
}

/// hastctl run with `args` against a socket that does not exist.
fn hastctl_alone(args: &[&str]) -> Output {
    Command::new(HASTCTL)
        .args(args)
        .env(CONTROL_ENV, "/nonexistent/hastctl")
        .output()
        .expect("run hastctl")
}

#[test]
fn hastctl_refuses_wrong_arguments_like_freebsds() {
    let usage = "usage: hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty]
\t\t[-m mediasize] name ...
       hastctl role [-d] [-c config] <init | primary | secondary> all | name ...
       hastctl list [-d] [-c config] [all | name ...]
       hastctl status [-d] [-c config] [all | name ...]
       hastctl dump [-d] [-c config] [all | name ...]
";
    for (args, stderr) in [
        (&[][..], usage.to_owned()),
        (&["frobnicate"][..], usage.to_owned()),
        (&["role", "master", "test"][..], usage.to_owned()),
        (&["role", "primary"][..], usage.to_owned()),
        (&["create"][..], usage.to_owned()),
        (&["list", "-h"][..], usage.to_owned()),
        (
            &["list", "-x"][..],
            format!("hastctl: illegal option -- x\n{usage}"),
        ),
        (
            &["role", "-c"][..],
            format!("hastctl: option requires an argument -- c\n{usage}"),
        ),
        (
            &["create", "-e", "big", "test"][..],
            "hastctl: Invalid extentsize\n".to_owned(),
        ),
    ] {
        let output = hastctl_alone(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), stderr, "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = hastctl_alone(&["role", "-d", "-c", "/etc/hast.conf", "init", "test"]);
    assert_eq!(output.status.code(), Some(71), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "[ERROR] Unable to connect to hastd via uds:///nonexistent/hastctl: No such file or directory.\n"
    );
}

/// `contrib/hast/hast-hook`.
fn hast_hook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/hast/hast-hook")
}

#[test]
fn hast_hook_checks_its_arguments_and_runs_havenctl() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let log = dir.path().join("havenctl.log");
    let havenctl = dir.path().join("havenctl");
    write_script(
        &havenctl,
        &format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n", log.display()),
    );
    run_once(&havenctl);
    fs::remove_file(&log).ok();
    let run = |args: &[&str], control_dir: Option<&str>, havenctl: &Path| {
        let mut command = Command::new(hast_hook());
        command
            .args(args)
            .env("HAVENCTL", havenctl)
            .env_remove("HAVEN_CONTROL_DIR");
        if let Some(dir) = control_dir {
            command.env("HAVEN_CONTROL_DIR", dir);
        }
        command.output().expect("run hast-hook")
    };
    let calls = || fs::read_to_string(&log).unwrap_or_default();

    for (args, control_dir, call) in [
        (
            &["role", "test", "init", "secondary"][..],
            None,
            "hast-hook role test init secondary",
        ),
        (
            &["connect", "my_res.1"][..],
            None,
            "hast-hook connect my_res.1",
        ),
        (
            &["split-brain", "test"][..],
            None,
            "hast-hook split-brain test",
        ),
        (
            &["disconnect", "test"][..],
            Some("/run/haven"),
            "--control-dir /run/haven hast-hook disconnect test",
        ),
    ] {
        fs::remove_file(&log).ok();
        let output = run(args, control_dir, &havenctl);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert_eq!(calls(), format!("{call}\n"), "{args:?}");
    }

    fs::remove_file(&log).ok();
    for args in [
        &[][..],
        &["connect"][..],
        &["bogus", "test"][..],
        &["role", "test", "init"][..],
        &["role", "test", "init", "master"][..],
        &["connect", "-test"][..],
        &["connect", "a b"][..],
        &["connect", "a;b"][..],
        &["connect", ""][..],
        &["connect", "test", "extra"][..],
    ] {
        let output = run(args, None, &havenctl);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).starts_with("hast-hook: "),
            "{args:?}: {output:?}"
        );
    }
    let output = run(&["connect", "test"], None, Path::new("havenctl"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let output = run(&["connect", "test"], Some("relative"), &havenctl);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(calls(), "", "havenctl is never run for wrong arguments");
}
