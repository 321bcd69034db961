//! Stand-ins for FreeBSD's `hastd` and `hastctl` (test code only).
//!
//! HAST cannot exist on Linux, and the rig's two hosts share one filesystem on a loop device
//! instead of replicating it. What Haven and FreeBSD's `carp-hast-switch` script see of HAST
//! is kept: `hastctl`'s commands, output, messages and exit statuses (sbin/hastctl/hastctl.c),
//! the worker processes titled `hastd: <res> (<role>)`, the provider `/dev/hast/<res>` in role
//! primary only, and the `exec` hook's events. What replication would decide is derived from
//! the shared storage: each hastd holds an exclusive `flock` on `<shared-dir>/<host>.alive`
//! for its life and publishes its role in `<shared-dir>/<res>.<host>.role`; the peer is
//! connected while it is alive in the complementary role.
//!
//! - [`hastd`]: the daemon (`src/bin/hastd.rs` runs it), its CLI and its control socket.
//! - [`hastctl`]: the control program (`src/bin/hastctl.rs` runs it).
//! - This module: the line protocol on the control socket, which both use and the rig uses
//!   through [`request`] for what hastctl cannot ask (`sync-interrupted <res>` and friends).
//!
//! # The control protocol
//!
//! One request per connection: the client writes one line of space-separated words and
//! reads the reply until hastd closes the connection. Requests:
//!
//! - `role <init|primary|secondary> <res|all> ...` — change roles, as `hastctl role`.
//! - `status <res|all> ...` — what `hastctl list` and `hastctl status` print.
//! - `create <res> ...` — as `hastctl create`: only in role init.
//! - rig only: `sync-start <res> [dirty-bytes]`, `sync-interrupted <res> [dirty-bytes]`,
//!   `sync-done <res>` — on the primary only, as hastd's sync thread (sbin/hastd/primary.c):
//!   set `dirty` (one extent by default; `sync-done` makes it 0) and run the `exec` hook's
//!   `syncstart`, `syncintr`, `syncdone`; refused on a secondary, which never sees a sync
//!   (sbin/hastd/secondary.c). `split-brain <res>` runs that hook on either side, and only
//!   the hook: the stand-in does not drop the secondary's worker as hastd does.
//!
//! Only the primary knows how much its peer lacks: a secondary's `status` lists `keepdirty: 0`
//! and `dirty: 0 (0B)` whatever its copy holds, and without a worker `status`, `extentsize`,
//! `keepdirty` and `dirty` are absent from the reply, so hastctl prints 0 for them
//! (`control_status`, sbin/hastd/control.c). A primary
//! whose worker exits with `EX_IOERR` drops to init with no hook (`child_exit`,
//! sbin/hastd/hastd.c); see `hastd` for the details.
//!   `disk-error <res>` makes the worker exit as on a local I/O error: a primary drops to
//!   init with no hook (hastd.c `child_exit()`).
//!
//! The reply is lines of `<key> <value>`: `resource <name>` starts one resource's block, in
//! which `error <code> <reason>` says the request failed for that resource (codes are hastd's
//! `EHAST_*`); the last line is `ok`, or `fail <code> <reason>` when the request as a whole
//! was refused. A `status` block has `role`, `provname`, `localpath`, `remoteaddr`,
//! `replication`, and, only while a worker runs (control.c asks the worker), `status`,
//! `workerpid`, `extentsize`, `keepdirty` and `dirty` (bytes); a secondary's worker reports
//! `keepdirty` and `dirty` 0 whatever its copy holds (control.c `ctrl_thread()`).

pub mod hastctl;
pub mod hastd;

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where hastd listens and hastctl connects (real hastd's `control` default).
pub const DEFAULT_CONTROL: &str = "/var/run/hastctl";

/// The environment variable naming another control socket for hastctl (real hastctl reads
/// it from hast.conf's `control`, which the stand-in has not got).
pub const CONTROL_ENV: &str = "HASTCTL_CONTROL";

/// `EHAST_NOENTRY`: no such resource.
pub const EHAST_NOENTRY: i32 = 1;
/// `EHAST_INVALID`: the request cannot be done (the stand-in's refusals).
pub const EHAST_INVALID: i32 = 2;
/// `EHAST_UNIMPLEMENTED`: unknown request.
pub const EHAST_UNIMPLEMENTED: i32 = 4;

/// How long a client waits for hastd to answer (real hastctl: `HAST_TIMEOUT`, 20 s).
const TIMEOUT: Duration = Duration::from_secs(20);

/// A HAST role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Init,
    Primary,
    Secondary,
}

impl Role {
    /// The word hastd uses (`role2str()`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Init => "init",
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }

    /// `init`, `primary` or `secondary`.
    pub fn parse(word: &str) -> Option<Role> {
        match word {
            "init" => Some(Role::Init),
            "primary" => Some(Role::Primary),
            "secondary" => Some(Role::Secondary),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One resource's block of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceReply {
    pub name: String,
    /// The block's `<key> <value>` lines other than `error`, in order.
    pub fields: Vec<(String, String)>,
    /// `error <code> <reason>`: the request failed for this resource.
    pub error: Option<(i32, String)>,
}

impl ResourceReply {
    /// The value of the field `key`, if the block has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request got no usable answer.
#[derive(Debug)]
pub enum CallError {
    /// hastd's socket could not be connected to (not running, or not there).
    Connect(std::io::Error),
    /// Sending or receiving failed after connecting.
    Io(std::io::Error),
    /// hastd refused the request as a whole (`fail <code> <reason>`).
    Failed { code: i32, reason: String },
    /// The reply is not in the protocol's shape.
    Malformed(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(error) => write!(f, "cannot connect to hastd: {error}"),
            CallError::Io(error) => write!(f, "cannot talk to hastd: {error}"),
            CallError::Failed { code, reason } => write!(f, "hastd error {code}: {reason}"),
            CallError::Malformed(why) => write!(f, "malformed reply from hastd: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Send `line` to the hastd listening on `socket` and read its reply into resource blocks.
pub fn call(socket: &Path, line: &str) -> Result<Vec<ResourceReply>, CallError> {
    let text = exchange(socket, line)?;
    parse_reply(&text)
}

/// Send `line` to the hastd listening on `socket` (from outside a rig host:
/// `/proc/<hastd pid>/root/var/run/hastctl`): the reply's text without its final `ok`, or why
/// not — also when hastd answered with an `error` for a resource.
pub fn request(socket: &Path, line: &str) -> Result<String, String> {
    let context = |why: String| format!("hastd at {}, request {line:?}: {why}", socket.display());
    let text = exchange(socket, line).map_err(|e| context(e.to_string()))?;
    let blocks = parse_reply(&text).map_err(|e| context(e.to_string()))?;
    if let Some(block) = blocks.iter().find(|b| b.error.is_some()) {
        let (code, reason) = block.error.as_ref().expect("found by error");
        return Err(context(format!(
            "resource {}: error {code}: {reason}",
            block.name
        )));
    }
    let body = text.strip_suffix("ok\n").unwrap_or(&text);
    Ok(body.to_owned())
}

/// Connect, send one line, read everything until hastd closes.
fn exchange(socket: &Path, line: &str) -> Result<String, CallError> {
    let mut stream = UnixStream::connect(socket).map_err(CallError::Connect)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(CallError::Io)?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(CallError::Io)?;
    let mut text = String::new();
    let mut reader = BufReader::new(stream);
    loop {
        let before = text.len();
        if reader.read_line(&mut text).map_err(CallError::Io)? == 0 {
            break;
        }
        if !text[before..].ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

/// Reply text → resource blocks; `fail` becomes [`CallError::Failed`].
fn parse_reply(text: &str) -> Result<Vec<ResourceReply>, CallError> {
    let mut blocks: Vec<ResourceReply> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let last = lines.peek().is_none();
        match key {
            "ok" if last && value.is_empty() => return Ok(blocks),
            "fail" if last => {
                let (code, reason) = error_value(value)
                    .ok_or_else(|| CallError::Malformed(format!("bad line {line:?}")))?;
                return Err(CallError::Failed { code, reason });
            }
            "resource" if !value.is_empty() => blocks.push(ResourceReply {
                name: value.to_owned(),
                ..ResourceReply::default()
            }),
            _ => {
                let block = blocks.last_mut().ok_or_else(|| {
                    CallError::Malformed(format!("{line:?} before any `resource` line"))
                })?;
                if key == "error" {
                    let error = error_value(value)
                        .ok_or_else(|| CallError::Malformed(format!("bad line {line:?}")))?;
                    block.error = Some(error);
                } else {
                    block.fields.push((key.to_owned(), value.to_owned()));
                }
            }
        }
    }
    Err(CallError::Malformed(
        "the reply ends without `ok` or `fail` (hastd went away?)".to_owned(),
    ))
}

/// `<code> <reason>`.
fn error_value(value: &str) -> Option<(i32, String)> {
    let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
    Some((code.parse().ok()?, reason.to_owned()))
}

/// A byte count as FreeBSD's `%NB` prints it: `humanize_number(buf, 5, n, "", HN_AUTOSCALE,
/// HN_NOSPACE | HN_DECIMAL)` then `B` (lib/libutil/humanize_number.c): `0B`, `2.0MB`,
/// `512KB`, `1.0GB`.
pub fn humanize(bytes: u64) -> String {
    const DIVISOR: u64 = 1024;
    const DECIMAL_CUT: u64 = 973; // ceil(.95 * 1024)
    const PREFIXES: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    // A 5-byte buffer holds 4 characters; one digit is the base, so 3 more fit.
    const MAX: u64 = 1000;
    let (mut quotient, mut remainder, mut scale) = (bytes, 0, 0);
    while (quotient >= MAX
        || (quotient == MAX - 1 && (remainder >= DECIMAL_CUT || remainder >= DIVISOR / 2)))
        && scale < PREFIXES.len() - 1
    {
        remainder = quotient % DIVISOR;
        quotient /= DIVISOR;
        scale += 1;
    }
    let prefix = PREFIXES[scale];
    if ((quotient == 9 && remainder < DECIMAL_CUT) || quotient < 9) && scale > 0 {
        let tenths = (remainder * 10 + DIVISOR / 2) / DIVISOR;
        format!("{}.{}{prefix}B", quotient + tenths / 10, tenths % 10)
    } else {
        let rounded = quotient + (remainder + DIVISOR / 2) / DIVISOR;
        format!("{rounded}{prefix}B")
    }
}

/// The control socket hastctl uses: `$HASTCTL_CONTROL`, else `/var/run/hastctl`.
pub fn control_path() -> PathBuf {
    std::env::var_os(CONTROL_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CONTROL), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_like_freebsd() {
        assert_eq!(humanize(0), "0B");
        assert_eq!(humanize(999), "999B");
        assert_eq!(humanize(1000), "1.0KB");
        assert_eq!(humanize(2_097_152), "2.0MB");
        assert_eq!(humanize(4_194_304), "4.0MB");
        assert_eq!(humanize(512 * 1024), "512KB");
        assert_eq!(humanize(10 * 1024 * 1024), "10MB");
        assert_eq!(humanize(1024 * 1024 * 1024), "1.0GB");
    }

    #[test]
    fn parses_replies() {
        let text = "resource test\nrole primary\nerror 2 peer is primary\nok\n";
        let blocks = parse_reply(text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].get("role"), Some("primary"));
        assert_eq!(blocks[0].error, Some((2, "peer is primary".to_owned())));
        assert!(matches!(
            parse_reply("fail 4 unknown request\n"),
            Err(CallError::Failed { code: 4, .. })
        ));
        assert!(matches!(
            parse_reply("resource test\n"),
            Err(CallError::Malformed(_))
        ));
    }
}
