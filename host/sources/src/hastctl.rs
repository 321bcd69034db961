//! hastctl: what hastd says about its resources when asked.
//!
//! HAST has no event for "the peer connected and the data is in sync" that a reader could
//! trust after a restart, and no machine-readable output: the daemon runs `hastctl list [res]`
//! at startup, after reconnecting to devd and when a hook says something changed, and this
//! module reads the text (sbin/hastctl/hastctl.c, `control_list()`):
//!
//! ```text
//! test:
//!   role: primary
//!   provname: test
//!   localpath: /dev/ad6
//!   extentsize: 2097152 (2.0MB)
//!   keepdirty: 64
//!   remoteaddr: 192.168.1.52
//!   sourceaddr: 192.168.1.51      (only when configured)
//!   replication: memsync
//!   status: complete              (only when a worker answered)
//!   workerpid: 1234               (only when a worker runs)
//!   dirty: 0 (0B)
//!   statistics:
//!     reads: 19
//!     ...
//! other:
//!   error: 2                      (instead of the fields, when hastd could not answer)
//! ```
//!
//! Only `role`, `status` and `dirty` matter to Haven; other `key: value` lines are accepted
//! without looking at their values, so fields a later FreeBSD adds do not break the reader.
//! `dirty` is printed for every resource, but hastd's worker only counts dirty extents on the
//! primary (the secondary reports a constant 0), so it is kept only for a primary.
//!
//! The terse `hastctl status [res]` table (`Name Status Role Components`, then one row per
//! resource: `name\t%-9s%-15s<localpath>\t<remoteaddr>`) is read too; it has no `dirty`.

use haven_core::{HastReplication, HastRole, HastStatus, names::check_hast_resource};
use std::collections::HashSet;

/// Why `hastctl` output was refused: which command's output, which line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command} output, line {line_number} {line:?}: {problem}")]
pub struct HastctlError {
    /// `hastctl list` or `hastctl status`.
    pub command: &'static str,
    /// 1-based.
    pub line_number: usize,
    pub line: String,
    pub problem: HastctlProblem,
}

/// What is wrong with a line of `hastctl` output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HastctlProblem {
    #[error("is neither a `<resource>:` line nor an indented `key: value` line")]
    NotKeyValue,
    #[error("comes before any `<resource>:` line")]
    BeforeResource,
    #[error("is indented like a statistics line but does not follow `statistics:`")]
    NotInStatistics,
    #[error("{0}")]
    BadName(String),
    #[error("role {0:?} is not init, primary or secondary")]
    UnknownRole(String),
    #[error("dirty {0:?} is not `<bytes>` or `<bytes> (<human-readable>)`")]
    BadDirty(String),
    #[error("hastd reports error {0} for this resource")]
    ResourceError(String),
    #[error("the resource has no `role:` line")]
    MissingRole,
    #[error("`{0}` appears twice for the same resource")]
    DuplicateKey(String),
    #[error("resource appears twice")]
    DuplicateResource,
    #[error("is not the header `Name Status Role Components`")]
    BadHeader,
    #[error("has fewer than the three columns name, status and role")]
    ShortRow,
}

const LIST: &str = "hastctl list";
const STATUS: &str = "hastctl status";

/// A resource being read from `hastctl list`.
struct Block<'a> {
    line_number: usize,
    line: &'a str,
    name: &'a str,
    role: Option<HastRole>,
    status: Option<&'a str>,
    dirty: Option<u64>,
    keys: HashSet<&'a str>,
    in_statistics: bool,
}

impl Block<'_> {
    fn finish(self) -> Result<HastStatus, HastctlError> {
        let role = self.role.ok_or_else(|| HastctlError {
            command: LIST,
            line_number: self.line_number,
            line: self.line.to_owned(),
            problem: HastctlProblem::MissingRole,
        })?;
        Ok(HastStatus {
            resource: self.name.to_owned(),
            role,
            replication: replication(self.status),
            dirty_bytes: self.dirty.filter(|_| role == HastRole::Primary),
        })
    }
}

/// What `hastctl list` said, read one resource at a time: the resources that read well, and a
/// refusal for each one that did not (or for a line that belongs to none). One odd resource
/// never costs the others their status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HastctlList {
    /// The resources that read well, in hastctl's order.
    pub statuses: Vec<HastStatus>,
    /// One refusal per resource (or stray line) that did not.
    pub refused: Vec<HastctlError>,
    /// The names of the refused resources whose name could be read: their status is not
    /// known from this output, which is not the same as their being gone.
    pub refused_names: Vec<String>,
}

/// The resource being read.
enum Reading<'a> {
    /// No resource line yet.
    Nothing,
    Block(Block<'a>),
    /// The current resource was refused: its lines are passed over up to the next resource.
    Skipping,
}

/// Read the output of `hastctl list [res]`, one resource at a time (see [`HastctlList`]).
/// Empty output (no resources configured) is an empty list. Linear in the output's size.
pub fn read_hastctl_list(output: &str) -> HastctlList {
    let mut list = HastctlList::default();
    let mut names: HashSet<&str> = HashSet::new();
    let mut reading = Reading::Nothing;
    let finish = |reading: Reading<'_>, list: &mut HastctlList| {
        if let Reading::Block(block) = reading {
            let name = block.name;
            match block.finish() {
                Ok(status) => list.statuses.push(status),
                Err(error) => {
                    list.refused.push(error);
                    list.refused_names.push(name.to_owned());
                }
            }
        }
    };
    for (index, line) in output.lines().enumerate() {
        let line_number = index + 1;
        let refusal = |problem| HastctlError {
            command: LIST,
            line_number,
            line: line.to_owned(),
            problem,
        };
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let text = &line[indent..];
        if indent == 0 {
            let Some(name) = text.strip_suffix(':') else {
                // A stray line: inside a resource's block (a tab, say), it spoils that block.
                if let Reading::Block(block) = &reading {
                    list.refused_names.push(block.name.to_owned());
                }
                list.refused.push(refusal(HastctlProblem::NotKeyValue));
                reading = Reading::Skipping;
                continue;
            };
            finish(
                std::mem::replace(&mut reading, Reading::Skipping),
                &mut list,
            );
            if let Err(reason) = check_hast_resource("HAST resource", name) {
                list.refused.push(refusal(HastctlProblem::BadName(reason)));
                continue;
            }
            if !names.insert(name) {
                list.refused
                    .push(refusal(HastctlProblem::DuplicateResource));
                continue;
            }
            reading = Reading::Block(Block {
                line_number,
                line,
                name,
                role: None,
                status: None,
                dirty: None,
                keys: HashSet::new(),
                in_statistics: false,
            });
            continue;
        }
        let block = match &mut reading {
            Reading::Block(block) => block,
            Reading::Skipping => continue,
            Reading::Nothing => {
                list.refused.push(refusal(HastctlProblem::BeforeResource));
                reading = Reading::Skipping;
                continue;
            }
        };
        if let Err(problem) = read_block_line(block, indent, text) {
            list.refused.push(refusal(problem));
            list.refused_names.push(block.name.to_owned());
            reading = Reading::Skipping;
        }
    }
    finish(reading, &mut list);
    list
}

/// One indented line of a resource's block.
fn read_block_line<'a>(
    block: &mut Block<'a>,
    indent: usize,
    text: &'a str,
) -> Result<(), HastctlProblem> {
    match indent {
        2 => {
            let (key, value) = key_value(text).ok_or(HastctlProblem::NotKeyValue)?;
            if !block.keys.insert(key) {
                return Err(HastctlProblem::DuplicateKey(key.to_owned()));
            }
            block.in_statistics = key == "statistics";
            match key {
                "role" => {
                    let role = crate::hast_role(value)
                        .ok_or_else(|| HastctlProblem::UnknownRole(value.to_owned()))?;
                    block.role = Some(role);
                }
                "status" => block.status = Some(value),
                "dirty" => {
                    let dirty = dirty_bytes(value)
                        .ok_or_else(|| HastctlProblem::BadDirty(value.to_owned()))?;
                    block.dirty = Some(dirty);
                }
                "error" => return Err(HastctlProblem::ResourceError(value.to_owned())),
                _ => {}
            }
            Ok(())
        }
        4.. if text.contains(':') => {
            if block.in_statistics {
                Ok(())
            } else {
                Err(HastctlProblem::NotInStatistics)
            }
        }
        _ => Err(HastctlProblem::NotKeyValue),
    }
}

/// Read the output of `hastctl list [res]` strictly: every resource, or the first refusal.
pub fn parse_hastctl_list(output: &str) -> Result<Vec<HastStatus>, HastctlError> {
    let mut list = read_hastctl_list(output);
    if list.refused.is_empty() {
        Ok(list.statuses)
    } else {
        Err(list.refused.swap_remove(0))
    }
}

/// Read the output of `hastctl status [res]`. It has no `dirty` column, so `dirty_bytes` is
/// always `None`; a resource hastd could not report on (`ERR<n>`) is an error.
pub fn parse_hastctl_status(output: &str) -> Result<Vec<HastStatus>, HastctlError> {
    let mut statuses: Vec<HastStatus> = Vec::new();
    let mut names: HashSet<&str> = HashSet::new();
    let mut seen_header = false;
    for (index, line) in output.lines().enumerate() {
        let line_number = index + 1;
        let refuse = |problem| HastctlError {
            command: STATUS,
            line_number,
            line: line.to_owned(),
            problem,
        };
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.is_empty() {
            continue;
        }
        if !seen_header {
            if columns != ["Name", "Status", "Role", "Components"] {
                return Err(refuse(HastctlProblem::BadHeader));
            }
            seen_header = true;
            continue;
        }
        let name = columns[0];
        check_hast_resource("HAST resource", name)
            .map_err(|e| refuse(HastctlProblem::BadName(e)))?;
        if let [_, error] = columns[..]
            && let Some(code) = error.strip_prefix("ERR")
        {
            return Err(refuse(HastctlProblem::ResourceError(code.to_owned())));
        }
        let [_, status, role, ..] = columns[..] else {
            return Err(refuse(HastctlProblem::ShortRow));
        };
        let role = crate::hast_role(role)
            .ok_or_else(|| refuse(HastctlProblem::UnknownRole(role.to_owned())))?;
        if !names.insert(name) {
            return Err(refuse(HastctlProblem::DuplicateResource));
        }
        statuses.push(HastStatus {
            resource: name.to_owned(),
            role,
            replication: replication(Some(status)),
            dirty_bytes: None,
        });
    }
    Ok(statuses)
}

/// `key: value` or `key:` (an empty value, as `statistics:`); keys are lowercase words.
fn key_value(text: &str) -> Option<(&str, &str)> {
    let (key, value) = match text.split_once(": ") {
        Some((key, value)) => (key, value),
        None => (text.strip_suffix(':')?, ""),
    };
    let valid_key = key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b' ');
    valid_key.then_some((key, value))
}

/// `complete` when the peer is connected, `degraded` when not; anything else (no worker, `-`
/// in the status table, a word a later hastd might add) is unknown.
fn replication(status: Option<&str>) -> HastReplication {
    match status {
        Some("complete") => HastReplication::Complete,
        Some("degraded") => HastReplication::Degraded,
        _ => HastReplication::Unknown,
    }
}

/// `2097152 (2.0MB)` → 2097152: the exact byte count before the humanized one.
fn dirty_bytes(value: &str) -> Option<u64> {
    let (number, human) = match value.split_once(' ') {
        Some((number, human)) => (number, Some(human)),
        None => (value, None),
    };
    if let Some(human) = human {
        let inner = human.strip_prefix('(')?.strip_suffix(')')?;
        if inner.is_empty() || inner.contains(['(', ')']) {
            return None;
        }
    }
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATISTICS: &str = "  statistics:
    reads: 19
    writes: 20
    deletes: 0
    flushes: 3
    activemap updates: 5
    local errors: read: 0, write: 0, delete: 0, flush: 0
    queues: local: 0, send: 0, recv: 0, done: 0, idle: 0
";

    fn primary_block() -> String {
        format!(
            "test:
  role: primary
  provname: test
  localpath: /dev/ad6
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 192.168.1.52
  replication: memsync
  status: complete
  workerpid: 1234
  dirty: 4194304 (4.0MB)
{STATISTICS}"
        )
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

    fn list_problem(output: &str) -> (usize, String, HastctlProblem) {
        let error = parse_hastctl_list(output).unwrap_err();
        assert_eq!(error.command, "hastctl list");
        (error.line_number, error.line, error.problem)
    }

    fn status_problem(output: &str) -> (usize, String, HastctlProblem) {
        let error = parse_hastctl_status(output).unwrap_err();
        assert_eq!(error.command, "hastctl status");
        (error.line_number, error.line, error.problem)
    }

    // ------------------------------------------------------------------------------ list

    #[test]
    fn list_primary() {
        assert_eq!(
            parse_hastctl_list(&primary_block()).unwrap(),
            vec![status(
                "test",
                HastRole::Primary,
                HastReplication::Complete,
                Some(4194304)
            )]
        );
    }

    #[test]
    fn list_from_the_facts_file() {
        let output = "test:
  role: primary
  provname: test
  localpath: /dev/ad6
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: 192.168.1.52
  replication: memsync
  status: complete
  dirty: 0 (0B)
  statistics: ...
";
        // `statistics: ...` is the facts file's abbreviation; a value there is accepted.
        assert_eq!(
            parse_hastctl_list(output).unwrap(),
            vec![status(
                "test",
                HastRole::Primary,
                HastReplication::Complete,
                Some(0)
            )]
        );
    }

    #[test]
    fn list_several_resources_secondary_and_init() {
        let output = format!(
            "{}db:
  role: secondary
  provname: db
  localpath: /dev/ada1
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: tcp4://10.0.0.2:8457
  sourceaddr: 10.0.0.1
  replication: fullsync
  status: degraded
  workerpid: 99
  dirty: 0 (0B)
{STATISTICS}spare:
  role: init
  provname: spare
  localpath: /dev/ada2
  extentsize: 2097152 (2.0MB)
  keepdirty: 64
  remoteaddr: none
  replication: memsync
  dirty: 0 (0B)
  statistics:
    reads: 0
",
            primary_block()
        );
        assert_eq!(
            parse_hastctl_list(&output).unwrap(),
            vec![
                status(
                    "test",
                    HastRole::Primary,
                    HastReplication::Complete,
                    Some(4194304)
                ),
                status("db", HastRole::Secondary, HastReplication::Degraded, None),
                status("spare", HastRole::Init, HastReplication::Unknown, None),
            ]
        );
    }

    #[test]
    fn list_tolerates_unknown_fields_odd_status_blank_lines_and_no_trailing_newline() {
        let output = "test:\n  role: primary\n  checksum: crc32\n  status: weird\n\n  dirty: 7";
        assert_eq!(
            parse_hastctl_list(output).unwrap(),
            vec![status(
                "test",
                HastRole::Primary,
                HastReplication::Unknown,
                Some(7)
            )]
        );
        let output = "test:\r\n  role: secondary\r\n  status: complete\r\n";
        assert_eq!(
            parse_hastctl_list(output).unwrap(),
            vec![status(
                "test",
                HastRole::Secondary,
                HastReplication::Complete,
                None
            )]
        );
    }

    #[test]
    fn list_primary_without_dirty_line() {
        assert_eq!(
            parse_hastctl_list("test:\n  role: primary\n").unwrap(),
            vec![status(
                "test",
                HastRole::Primary,
                HastReplication::Unknown,
                None
            )]
        );
    }

    #[test]
    fn list_empty_output() {
        assert_eq!(parse_hastctl_list("").unwrap(), vec![]);
        assert_eq!(parse_hastctl_list("\n\n").unwrap(), vec![]);
    }

    #[test]
    fn list_dirty_values() {
        assert_eq!(dirty_bytes("0 (0B)"), Some(0));
        assert_eq!(dirty_bytes("0"), Some(0));
        assert_eq!(dirty_bytes("18446744073709551615 (16EB)"), Some(u64::MAX));
        for bad in [
            "",
            "-1 (0B)",
            "+1",
            "1.5",
            "x (0B)",
            "0 0B",
            "0 ()",
            "0 (0B",
            "0 (0B) extra",
            "18446744073709551616",
            " 0",
        ] {
            assert_eq!(dirty_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn list_malformed() {
        assert_eq!(
            list_problem("test:\n  role: bogus\n"),
            (
                2,
                "  role: bogus".into(),
                HastctlProblem::UnknownRole("bogus".into())
            )
        );
        assert_eq!(
            list_problem("test:\n  role: unknown\n").2,
            HastctlProblem::UnknownRole("unknown".into())
        );
        assert_eq!(
            list_problem("test:\n  role: primary\n  dirty: lots\n"),
            (
                3,
                "  dirty: lots".into(),
                HastctlProblem::BadDirty("lots".into())
            )
        );
        assert_eq!(
            list_problem("test:\n  provname: test\nother:\n  role: primary\n"),
            (1, "test:".into(), HastctlProblem::MissingRole)
        );
        assert_eq!(
            list_problem("test:\n  provname: test\n"),
            (1, "test:".into(), HastctlProblem::MissingRole)
        );
        assert_eq!(
            list_problem("  role: primary\n"),
            (1, "  role: primary".into(), HastctlProblem::BeforeResource)
        );
        assert_eq!(
            list_problem("hastctl: cannot connect\n"),
            (
                1,
                "hastctl: cannot connect".into(),
                HastctlProblem::NotKeyValue
            )
        );
        assert_eq!(
            list_problem("test:\n  role primary\n").2,
            HastctlProblem::NotKeyValue
        );
        assert_eq!(
            list_problem("test:\n   role: primary\n").2,
            HastctlProblem::NotKeyValue
        );
        assert_eq!(
            list_problem("test:\n\trole: primary\n").2,
            HastctlProblem::NotKeyValue
        );
        assert_eq!(
            list_problem("test:\n  Role: primary\n").2,
            HastctlProblem::NotKeyValue
        );
        assert_eq!(
            list_problem("test:\n  role: primary\n    reads: 1\n"),
            (3, "    reads: 1".into(), HastctlProblem::NotInStatistics)
        );
        assert_eq!(
            list_problem("test:\n  statistics:\n    reads 1\n").2,
            HastctlProblem::NotKeyValue
        );
        assert_eq!(
            list_problem("test:\n  role: primary\n  role: secondary\n").2,
            HastctlProblem::DuplicateKey("role".into())
        );
        assert_eq!(
            list_problem("test:\n  role: primary\ntest:\n  role: primary\n"),
            (3, "test:".into(), HastctlProblem::DuplicateResource)
        );
        assert_eq!(
            list_problem("test:\n  error: 2\n"),
            (
                2,
                "  error: 2".into(),
                HastctlProblem::ResourceError("2".into())
            )
        );
        assert!(matches!(
            list_problem("bad name:\n  role: primary\n"),
            (1, _, HastctlProblem::BadName(_))
        ));
        assert!(matches!(
            list_problem("a;b:\n  role: primary\n").2,
            HastctlProblem::BadName(_)
        ));
    }

    #[test]
    fn list_error_message() {
        let message = parse_hastctl_list("test:\n  role: bogus\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "hastctl list output, line 2 \"  role: bogus\": role \"bogus\" is not init, primary \
             or secondary"
        );
    }

    // ---------------------------------------------------------------------------- status

    #[test]
    fn status_table() {
        let output = "Name\tStatus\t Role\t\tComponents
test\tcomplete primary        /dev/ad6\t192.168.1.52
db\tdegraded secondary      /dev/ada1\ttcp4://10.0.0.2
spare\t-        init           /dev/ada2\tnone
";
        assert_eq!(
            parse_hastctl_status(output).unwrap(),
            vec![
                status("test", HastRole::Primary, HastReplication::Complete, None),
                status("db", HastRole::Secondary, HastReplication::Degraded, None),
                status("spare", HastRole::Init, HastReplication::Unknown, None),
            ]
        );
    }

    #[test]
    fn status_header_variants_and_empty() {
        assert_eq!(parse_hastctl_status("").unwrap(), vec![]);
        assert_eq!(
            parse_hastctl_status("Name\tStatus\tRole\t\tComponents\n").unwrap(),
            vec![]
        );
        assert_eq!(
            parse_hastctl_status("Name Status Role Components\ntest complete primary")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn status_malformed() {
        assert_eq!(
            status_problem("test\tcomplete primary /dev/ad6\t1.2.3.4\n"),
            (
                1,
                "test\tcomplete primary /dev/ad6\t1.2.3.4".into(),
                HastctlProblem::BadHeader
            )
        );
        let header = "Name\tStatus\t Role\t\tComponents\n";
        assert_eq!(
            status_problem(&format!("{header}test\tERR2\n")),
            (
                2,
                "test\tERR2".into(),
                HastctlProblem::ResourceError("2".into())
            )
        );
        assert_eq!(
            status_problem(&format!("{header}test\tcomplete\n")).2,
            HastctlProblem::ShortRow
        );
        assert_eq!(
            status_problem(&format!("{header}test\tcomplete boss /dev/ad6\tx\n")).2,
            HastctlProblem::UnknownRole("boss".into())
        );
        assert!(matches!(
            status_problem(&format!("{header}$(x)\tcomplete primary /dev/ad6\tx\n")).2,
            HastctlProblem::BadName(_)
        ));
        assert_eq!(
            status_problem(&format!("{header}a complete primary\na degraded primary\n")).2,
            HastctlProblem::DuplicateResource
        );
    }
}
