//! The `hastctl` stand-in: FreeBSD's command line, output, messages and exit statuses
//! (sbin/hastctl/hastctl.c), asking the [`super::hastd`] stand-in over its control socket.
//!
//! ```text
//! hastctl create [-d] [-c config] [-e extentsize] [-k keepdirty] [-m mediasize] name ...
//! hastctl role [-d] [-c config] <init | primary | secondary> all | name ...
//! hastctl list [-d] [-c config] [all | name ...]
//! hastctl status [-d] [-c config] [all | name ...]
//! hastctl dump [-d] [-c config] [all | name ...]
//! ```
//!
//! Differences, all forced by there being no hast.conf and no HAST metadata: `-c` is accepted
//! and ignored; the socket is `/var/run/hastctl` (hast.conf's default `control`) or
//! `$HASTCTL_CONTROL`; `create` asks hastd (which allows it only in role init) instead of
//! writing metadata itself; `dump` says it is not available (exit 69, `EX_UNAVAILABLE`).
//! A refused role change prints real hastctl's `Received error <n> from hastd.` and then
//! hastd's reason, and exits with the error (2, `EHAST_INVALID`).

use std::path::Path;

use super::{CallError, EHAST_NOENTRY, ResourceReply, Role, call, control_path, humanize};

// sysexits(3).
const EX_USAGE: i32 = 64;
const EX_DATAERR: i32 = 65;
const EX_NOINPUT: i32 = 66;
const EX_UNAVAILABLE: i32 = 69;
const EX_SOFTWARE: i32 = 70;
const EX_OSERR: i32 = 71;

const PROGNAME: &str = "hastctl";

/// How hastctl ends: print nothing more and exit with the status.
struct Exit(i32);

/// The program's entry; returns the exit status.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    match run(&args) {
        Ok(status) | Err(Exit(status)) => status,
    }
}

/// `usage()`: all the forms, to stderr, exit `EX_USAGE`.
fn usage() -> Exit {
    eprint!(
        "usage: {PROGNAME} create [-d] [-c config] [-e extentsize] [-k keepdirty]\n\
         \t\t[-m mediasize] name ...\n       \
         {PROGNAME} role [-d] [-c config] <init | primary | secondary> all | name ...\n       \
         {PROGNAME} list [-d] [-c config] [all | name ...]\n       \
         {PROGNAME} status [-d] [-c config] [all | name ...]\n       \
         {PROGNAME} dump [-d] [-c config] [all | name ...]\n"
    );
    Exit(EX_USAGE)
}

/// A pjdlog level: errors and warnings go to stderr, debug lines to stdout.
#[derive(Debug, Clone, Copy)]
enum Level {
    Error,
    Warning,
    Debug(u32),
}

/// pjdlog's line in the foreground: `[ERROR] [prefix] message`, `[DEBUG][1] [prefix] ...`.
fn pjdlog(level: Level, resource: Option<&str>, message: &str) {
    let prefix = resource.map(|r| format!("[{r}] ")).unwrap_or_default();
    match level {
        Level::Error => eprintln!("[ERROR] {prefix}{message}"),
        Level::Warning => eprintln!("[WARNING] {prefix}{message}"),
        Level::Debug(n) => println!("[DEBUG][{n}] {prefix}{message}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Create,
    Role,
    List,
    Status,
    Dump,
}

fn run(args: &[String]) -> Result<i32, Exit> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage());
    };
    let (cmd, optstr) = match command.as_str() {
        "create" => (Cmd::Create, "c:de:k:m:h"),
        "role" => (Cmd::Role, "c:dh"),
        "list" => (Cmd::List, "c:dh"),
        "status" => (Cmd::Status, "c:dh"),
        "dump" => (Cmd::Dump, "c:dh"),
        _ => return Err(usage()),
    };
    let (options, operands) = getopt(rest, optstr)?;
    let mut debug = 0;
    for (option, value) in &options {
        match option {
            'd' => debug += 1,
            'e' | 'k' | 'm' if !expand_number(value) => {
                let what = match option {
                    'e' => "extentsize",
                    'k' => "keepdirty",
                    _ => "mediasize",
                };
                eprintln!("{PROGNAME}: Invalid {what}");
                return Err(Exit(EX_USAGE));
            }
            'h' => return Err(usage()),
            _ => {} // -c: there is no hast.conf to read; -e, -k, -m: no metadata to write.
        }
    }
    if matches!(cmd, Cmd::Create | Cmd::Role) && operands.is_empty() {
        return Err(usage());
    }
    let socket = control_path();
    match cmd {
        Cmd::Create => create(&socket, operands),
        Cmd::Dump => {
            pjdlog(
                Level::Error,
                None,
                "dump is not available: the hastd stand-in keeps no HAST metadata.",
            );
            Err(Exit(EX_UNAVAILABLE))
        }
        Cmd::Role => {
            let [role, names @ ..] = operands else {
                return Err(usage());
            };
            if names.is_empty() {
                return Err(usage());
            }
            let role = Role::parse(role).ok_or_else(usage)?;
            let blocks = ask(&socket, &format!("role {role} {}", names.join(" ")))?;
            Ok(set_role(&blocks, role, debug))
        }
        Cmd::List | Cmd::Status => {
            let names = if operands.is_empty() {
                "all".to_owned()
            } else {
                operands.join(" ")
            };
            let blocks = ask(&socket, &format!("status {names}"))?;
            Ok(if cmd == Cmd::List {
                list(&blocks)
            } else {
                status(&blocks)
            })
        }
    }
}

/// BSD getopt(3): options until the first operand or `--`; `optstr` letters, `:` after one
/// that takes a value. Errors are printed as getopt prints them, then `usage()`.
#[allow(clippy::type_complexity)]
fn getopt<'a>(
    args: &'a [String],
    optstr: &str,
) -> Result<(Vec<(char, String)>, &'a [String]), Exit> {
    let mut options = Vec::new();
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if arg == "--" {
            index += 1;
            break;
        }
        let Some(letters) = arg.strip_prefix('-').filter(|l| !l.is_empty()) else {
            break;
        };
        index += 1;
        for (at, letter) in letters.char_indices() {
            let spec = optstr.find(letter).filter(|_| letter != ':');
            let Some(spec) = spec else {
                eprintln!("{PROGNAME}: illegal option -- {letter}");
                return Err(usage());
            };
            if optstr[spec + letter.len_utf8()..].starts_with(':') {
                let attached = &letters[at + letter.len_utf8()..];
                let value = if !attached.is_empty() {
                    attached.to_owned()
                } else if let Some(next) = args.get(index) {
                    index += 1;
                    next.clone()
                } else {
                    eprintln!("{PROGNAME}: option requires an argument -- {letter}");
                    return Err(usage());
                };
                options.push((letter, value));
                break;
            }
            options.push((letter, String::new()));
        }
    }
    Ok((options, &args[index..]))
}

/// expand_number(3): digits with an optional `b`, `k`, `m`, `g`, `t`, `p` or `e`.
fn expand_number(text: &str) -> bool {
    let digits = text.trim_end_matches(|c: char| "bkmgtpeBKMGTPE".contains(c));
    text.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Send one request; failures end hastctl as real hastctl's do.
fn ask(socket: &Path, line: &str) -> Result<Vec<ResourceReply>, Exit> {
    let address = format!("uds://{}", socket.display());
    call(socket, line).map_err(|error| match error {
        CallError::Connect(e) => {
            pjdlog(
                Level::Error,
                None,
                &format!(
                    "Unable to connect to hastd via {address}: {}.",
                    strerror(&e)
                ),
            );
            Exit(EX_OSERR)
        }
        CallError::Io(e) => {
            pjdlog(
                Level::Error,
                None,
                &format!(
                    "cannot receive reply from hastd via {address}: {}.",
                    strerror(&e)
                ),
            );
            Exit(EX_UNAVAILABLE)
        }
        CallError::Malformed(why) => {
            pjdlog(
                Level::Error,
                None,
                &format!("cannot receive reply from hastd via {address}: {why}."),
            );
            Exit(EX_UNAVAILABLE)
        }
        CallError::Failed { code, reason } => {
            pjdlog(
                Level::Error,
                None,
                &format!("Error {code} received from hastd."),
            );
            pjdlog(Level::Error, None, &format!("hastd: {reason}."));
            Exit(EX_SOFTWARE)
        }
    })
}

/// strerror(3) of an I/O error, without Rust's ` (os error N)`.
fn strerror(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => error.to_string(),
    }
}

/// `control_set_role()`: warn about each resource hastd refused; the first error is the exit
/// status.
fn set_role(blocks: &[ResourceReply], role: Role, debug: u32) -> i32 {
    let mut status = 0;
    for block in blocks {
        let name = Some(block.name.as_str());
        if let Some((code, reason)) = &block.error {
            if status == 0 {
                status = *code;
            }
            pjdlog(
                Level::Warning,
                name,
                &format!("Received error {code} from hastd."),
            );
            if *code != EHAST_NOENTRY && !reason.is_empty() {
                pjdlog(Level::Warning, name, &format!("hastd: {reason}."));
            }
            continue;
        }
        let old = block.get("previous").unwrap_or("(null)");
        if old == role.as_str() {
            if debug >= 2 {
                pjdlog(Level::Debug(2), name, &format!("Role unchanged ({old})."));
            }
        } else if debug >= 1 {
            pjdlog(
                Level::Debug(1),
                name,
                &format!("Role changed from {old} to {role}."),
            );
        }
    }
    status
}

/// `create`: per resource, `Unknown resource` (65) or hastd's refusal (66).
fn create(socket: &Path, names: &[String]) -> Result<i32, Exit> {
    let blocks = ask(socket, &format!("create {}", names.join(" ")))?;
    let mut status = 0;
    for block in &blocks {
        let Some((code, reason)) = &block.error else {
            continue;
        };
        let exit = if *code == EHAST_NOENTRY {
            pjdlog(
                Level::Error,
                None,
                &format!("Unknown resource {}.", block.name),
            );
            EX_DATAERR
        } else {
            pjdlog(Level::Error, Some(&block.name), &format!("{reason}."));
            EX_NOINPUT
        };
        if status == 0 {
            status = exit;
        }
    }
    Ok(status)
}

/// A numeric field (absent: 0, as `nv_get_uint*()` returns).
fn number(block: &ResourceReply, key: &str) -> u64 {
    block.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A string field (absent: what printf prints for NULL).
fn text<'a>(block: &'a ResourceReply, key: &str) -> &'a str {
    block.get(key).unwrap_or("(null)")
}

/// `control_list()`.
fn list(blocks: &[ResourceReply]) -> i32 {
    let mut status = 0;
    let mut out = String::new();
    for block in blocks {
        out.push_str(&format!("{}:\n", block.name));
        if let Some((code, _)) = &block.error {
            if status == 0 {
                status = *code;
            }
            out.push_str(&format!("  error: {code}\n"));
            continue;
        }
        let extentsize = number(block, "extentsize");
        let dirty = number(block, "dirty");
        out.push_str(&format!("  role: {}\n", text(block, "role")));
        out.push_str(&format!("  provname: {}\n", text(block, "provname")));
        out.push_str(&format!("  localpath: {}\n", text(block, "localpath")));
        out.push_str(&format!(
            "  extentsize: {extentsize} ({})\n",
            humanize(extentsize)
        ));
        out.push_str(&format!("  keepdirty: {}\n", number(block, "keepdirty")));
        out.push_str(&format!("  remoteaddr: {}\n", text(block, "remoteaddr")));
        if let Some(source) = block.get("sourceaddr") {
            out.push_str(&format!("  sourceaddr: {source}\n"));
        }
        out.push_str(&format!("  replication: {}\n", text(block, "replication")));
        if let Some(state) = block.get("status") {
            out.push_str(&format!("  status: {state}\n"));
        }
        let pid = number(block, "workerpid");
        if pid != 0 {
            out.push_str(&format!("  workerpid: {pid}\n"));
        }
        out.push_str(&format!("  dirty: {dirty} ({})\n", humanize(dirty)));
        out.push_str(
            "  statistics:\n    reads: 0\n    writes: 0\n    deletes: 0\n    flushes: 0\n    \
             activemap updates: 0\n    local errors: read: 0, write: 0, delete: 0, flush: 0\n    \
             queues: local: 0, send: 0, recv: 0, done: 0, idle: 0\n",
        );
    }
    print!("{out}");
    status
}

/// `control_status()`: the terse table.
fn status(blocks: &[ResourceReply]) -> i32 {
    let mut status = 0;
    let mut out = String::new();
    for (index, block) in blocks.iter().enumerate() {
        if index == 0 {
            out.push_str("Name\tStatus\t Role\t\tComponents\n");
        }
        out.push_str(&format!("{}\t", block.name));
        if let Some((code, _)) = &block.error {
            if status == 0 {
                status = *code;
            }
            out.push_str(&format!("ERR{code}\n"));
            continue;
        }
        out.push_str(&format!(
            "{:<9}{:<15}{}\t{}\n",
            block.get("status").unwrap_or("-"),
            text(block, "role"),
            text(block, "localpath"),
            text(block, "remoteaddr"),
        ));
    }
    print!("{out}");
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn getopt_stops_at_the_first_operand() {
        let args = strings(&["-dd", "-c", "/etc/hast.conf", "primary", "-d", "test"]);
        let (options, operands) = getopt(&args, "c:dh").ok().unwrap();
        assert_eq!(
            options,
            vec![
                ('d', String::new()),
                ('d', String::new()),
                ('c', "/etc/hast.conf".to_owned())
            ]
        );
        assert_eq!(operands, &strings(&["primary", "-d", "test"])[..]);
        let args = strings(&["-c/x", "--", "-a"]);
        let (options, operands) = getopt(&args, "c:dh").ok().unwrap();
        assert_eq!(options, vec![('c', "/x".to_owned())]);
        assert_eq!(operands, &strings(&["-a"])[..]);
    }

    #[test]
    fn expands_numbers_like_expand_number() {
        assert!(expand_number("2097152"));
        assert!(expand_number("2m"));
        assert!(!expand_number("2mb"));
        assert!(!expand_number("m"));
        assert!(!expand_number("x1"));
    }
}
