//! Storage roles: `hast-role` through `hastctl` or `drbdadm`, and `wait-worker-gone`, which
//! waits for a HAST worker's process title to go away.

use super::{Done, POLL_INTERVAL, Platform, StepRun, human, processes};
use haven_core::{HastRole, StorageKind};
use std::time::Instant;

/// `hast-role <res> <role>`: `hastctl role <role> <res>`, or `drbdadm primary|secondary
/// <res>`; nothing when `hastctl list <res>` / `drbdadm role <res>` already reports the role.
pub(super) fn set_role(
    run: &mut StepRun<'_>,
    resource: &str,
    role: HastRole,
) -> Result<Done, String> {
    let storage = run.setup.storage;
    if storage == StorageKind::Drbd && role == HastRole::Init {
        return Err(format!(
            "role init has no DRBD equivalent (drbdadm knows primary and secondary); \
             nothing was run for `{resource}`"
        ));
    }
    match current_role(run, resource) {
        Ok(current) if current == role => {
            return Ok(Done::Already(format!("`{resource}` is {role} already")));
        }
        Ok(current) => run.note(format!("`{resource}` is {current}")),
        Err(why) => run.note(format!(
            "the role of `{resource}` is not known ({why}): acting anyway"
        )),
    }
    let tools = run.tools();
    let role_word = role.to_string();
    let (program, args): (_, Vec<&str>) = match storage {
        StorageKind::Hast => (&tools.hastctl, vec!["role", &role_word, resource]),
        StorageKind::Drbd => (&tools.drbdadm, vec![&role_word, resource]),
    };
    let retries = run.setup.config.retries("hast-role");
    let goal = |run: &mut StepRun<'_>| match current_role(run, resource) {
        Ok(current) if current == role => Some(format!("`{resource}` is {role}")),
        _ => None,
    };
    run.act_with_retries(retries, program, &args, &goal)
}

/// The role the storage reports for `resource`; `Err` says why it is not known.
fn current_role(run: &mut StepRun<'_>, resource: &str) -> Result<HastRole, String> {
    let tools = run.tools();
    let (program, args, name) = match run.setup.storage {
        StorageKind::Hast => (&tools.hastctl, ["list", resource], "hastctl list"),
        StorageKind::Drbd => (&tools.drbdadm, ["role", resource], "drbdadm role"),
    };
    let output = run.probe(program, &args)?;
    if !output.success() {
        return Err(format!("`{name}` {}", super::status_text(output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    match run.setup.storage {
        StorageKind::Hast => {
            let list = haven_sources::hastctl::read_hastctl_list(&text);
            if let Some(status) = list.statuses.iter().find(|s| s.resource == resource) {
                return Ok(status.role);
            }
            match list.refused.into_iter().next() {
                Some(refusal) => Err(refusal.to_string()),
                None => Err(format!("`hastctl list {resource}` does not list it")),
            }
        }
        StorageKind::Drbd => parse_drbd_role(&text)
            .ok_or_else(|| format!("`drbdadm role` printed {:?}", text.trim())),
    }
}

/// The local role in `drbdadm role <res>`'s output: `Primary` or `Secondary` (DRBD 9), or
/// `Primary/Secondary`, local then peer (DRBD 8.4). Anything else (`Unknown`, an error) is
/// `None`.
pub(super) fn parse_drbd_role(output: &str) -> Option<HastRole> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    let local = line.split('/').next()?.trim();
    match local {
        "Primary" => Some(HastRole::Primary),
        "Secondary" => Some(HastRole::Secondary),
        _ => None,
    }
}

/// A HAST worker's process title: `hastd: <res> (<role>)`.
pub(super) fn worker_title(resource: &str, role: HastRole) -> String {
    format!("hastd: {resource} ({role})")
}

/// `wait-worker-gone <res> <role>`: until no process has the worker's title, looking every
/// [`POLL_INTERVAL`]; done at once when none has it.
pub(super) fn wait_worker_gone(
    run: &mut StepRun<'_>,
    resource: &str,
    role: HastRole,
) -> Result<Done, String> {
    let title = worker_title(resource, role);
    let started = Instant::now();
    let still_runs = |found: &[String]| format!("`{title}` still runs ({})", found.join(", "));
    let mut seen: Option<Vec<String>> = None;
    loop {
        let found = match run.platform() {
            Platform::Linux => processes::linux_pids_titled(&title),
            Platform::FreeBsd => freebsd_titled(run, &title),
        };
        let found = match (found, &seen) {
            (Ok(found), _) => found,
            // The time ran out while looking again: what was seen last is the reason.
            (Err(_), Some(seen)) if run.remaining().is_zero() => {
                return Err(run.out_of_time(&still_runs(seen)));
            }
            (Err(why), _) => return Err(why),
        };
        let first = seen.is_none();
        if found.is_empty() {
            return Ok(if first {
                Done::Already(format!("no process is titled `{title}`"))
            } else {
                run.note(format!(
                    "no process is titled `{title}` after {}",
                    human(started.elapsed())
                ));
                Done::Ran
            });
        }
        if !run.pause(POLL_INTERVAL) {
            return Err(run.out_of_time(&still_runs(&found)));
        }
        seen = Some(found);
    }
}

/// The lines of `ps -axww -o command=` that are the title: the command column of every
/// process, not cut to a terminal's width.
fn freebsd_titled(run: &mut StepRun<'_>, title: &str) -> Result<Vec<String>, String> {
    let ps = &run.tools().ps;
    let args = ["-axww", "-o", "command="];
    let output = run.probe(ps, &args)?;
    if !output.success() {
        return Err(super::exit_failure(
            &crate::command::command_line(ps, &args),
            &output,
            None,
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter(|line| ps_line_is(line, title))
        .map(|line| format!("`{}`", line.trim()))
        .collect())
}

/// Whether a line of FreeBSD's `ps -o command` is a process titled `title`: the title
/// exactly, or followed by ` (<command name>)`, which ps adds when the title's first word is
/// not the process's command name (bin/ps/fmt.c), as for a worker hastd renamed with
/// setproctitle(3): `hastd: test (secondary) (hastd)`.
pub(super) fn ps_line_is(line: &str, title: &str) -> bool {
    let line = line.trim();
    let Some(rest) = line.strip_prefix(title) else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix(" (")
            .and_then(|rest| rest.strip_suffix(')'))
            .is_some_and(|name| {
                !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || "()".contains(c))
            })
}
