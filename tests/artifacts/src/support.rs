//! Test code only: what the tests of several crates share (the daemon's hastctl poller,
//! havend end to end, the executors): for their stand-ins for system tools, the text
//! FreeBSD's `hastctl list` prints and installing a stand-in script; a bounded wait; and the
//! benchmarks' percentiles; versions of a module.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Generous bound for anything that should happen "soon": how long [`wait_until`] waits and
/// [`run_once`] retries a script that stays busy.
pub const SOON: Duration = Duration::from_secs(20);

/// One resource as FreeBSD's `hastctl list` prints it (sbin/hastctl/hastctl.c,
/// `control_list()`): `resource`, `role`, `status` and `dirty` as given, the other fields
/// (`localpath: /dev/ada1`, `remoteaddr: 192.168.1.52`, `replication: memsync`,
/// `workerpid: 1234`, the statistics) fixed.
pub fn hastctl_list(resource: &str, role: &str, status: &str, dirty: &str) -> String {
    format!(
        "{resource}:
  role: {role}
  provname: {resource}
  localpath: /dev/ada1
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 192.168.1.52
  replication: memsync
  status: {status}
  workerpid: 1234
  dirty: {dirty}
  statistics:
    reads: 19
    writes: 20
    deletes: 0
    flushes: 3
    activemap updates: 5
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0
"
    )
}

/// A TCP port on loopback that was free a moment ago (for two daemons that must name each
/// other's port before either binds).
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on loopback")
}

/// Write the script `text` to `path`, executable (mode 0755).
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|error| panic!("cannot make {} executable: {error}", path.display()));
}

/// Run the script at `path` once with the argument `probe`, and what it did. Another test
/// thread that forks while the script is open for writing makes exec fail with `ETXTBSY`
/// until that child execs: that is retried (for a bounded time), so that the program under
/// test, which runs the script next, does not meet it.
pub fn run_once(path: &Path) -> Output {
    let started = Instant::now();
    loop {
        match Command::new(path).arg("probe").output() {
            Ok(output) => return output,
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                assert!(started.elapsed() < SOON, "{} stays busy", path.display());
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("cannot run {}: {error}", path.display()),
        }
    }
}

/// Wait until `condition` holds, for at most [`SOON`]; `what` names it when it does not.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < SOON, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `quantile` (0 to 1, nearest rank) of `sorted`, which must be sorted and not empty: what
/// the benchmarks report as median, p90, p99.
pub fn quantile(sorted: &[std::time::Duration], quantile: f64) -> std::time::Duration {
    assert!(!sorted.is_empty(), "no samples");
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The usual summary of a set of timings.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub samples: usize,
    pub median: std::time::Duration,
    pub p90: std::time::Duration,
    pub p99: std::time::Duration,
    pub max: std::time::Duration,
}

impl Percentiles {
    /// The summary of `samples` (not empty).
    pub fn of(mut samples: Vec<std::time::Duration>) -> Percentiles {
        samples.sort_unstable();
        Percentiles {
            samples: samples.len(),
            median: quantile(&samples, 0.5),
            p90: quantile(&samples, 0.9),
            p99: quantile(&samples, 0.99),
            max: quantile(&samples, 1.0),
        }
    }
}

fn leb128(mut value: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}

/// `module` (a core module or component) with a custom section appended: the same code,
/// another module hash. For tests and benchmarks that need versions of one policy.
pub fn with_custom_section(module: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    assert!(module.starts_with(b"\0asm"), "not a WebAssembly module");
    let mut body = leb128(name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut bytes = module.to_vec();
    bytes.push(0);
    bytes.extend(leb128(body.len()));
    bytes.extend(body);
    bytes
}
