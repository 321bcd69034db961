//! `demote-carp` and `lift-carp-demotion`: make this host's CARP give a vhid up to the peer and
//! hold back, and let it take part again. Each CARP implementation offers its own means, so
//! the `[[carp]]` entry of the vhid says which one runs it:
//!
//! | | demote | lift |
//! |---|---|---|
//! | FreeBSD carp(4) | `ifconfig <if> vhid <n> advskew 240 [state backup]` | `ifconfig <if> vhid <n> advskew <configured>` |
//! | keepalived | `1` into the entry's `keepalived-track-file` | `0` into it |
//! | ucarp | `SIGUSR2` to the ucarp process of the vhid | nothing to do |
//!
//! - **FreeBSD**: `advskew` rather than `sysctl net.inet.carp.demotion`, because the sysctl is
//!   one counter for every vhid, shared with the kernel's own demotions (an interface going
//!   down, pfsync's bulk update), and a write *adds* to it (`carp_demote_adj` in
//!   sys/netinet/ip_carp.c), so a step run twice, or after a restart, would demote twice and a
//!   lift could undo the kernel's. The advskew is per vhid and absolute, so the step is
//!   idempotent: it reads `ifconfig <if>` first. 240 is `CARP_MAXSKEW`; a master is also told
//!   `state backup` (sbin/ifconfig/ifcarp.c), since without `net.inet.carp.preempt` a worse
//!   advskew alone does not make it give way. A demoted backup takes the address only when the
//!   peer stops advertising.
//! - **keepalived**: its documented `track_file` (keepalived.conf(5), `vrrp_track_file`): the
//!   file holds a number; with `weight 0` a non-zero value puts the instance in FAULT (never
//!   master), with a negative weight it lowers the priority. The operator writes the
//!   `track_file` block; Haven writes the number, atomically (a new file renamed over).
//! - **ucarp** has no demotion it keeps at run time (src/carp.c): `SIGUSR2` makes a master go
//!   backup, pause 3 s and then elect as usual, so the peer (not preempted: ucarp's default)
//!   takes the address. A backup ignores it. There is nothing to lift. The process is found in
//!   `/proc` by its arguments (ucarp's `getopt_long` options in src/ucarp_p.h): the vhid, and
//!   the interface and address when given.

use super::processes::{argv_of, pids};
use super::{Done, StepRun};
use crate::system::Platform;
use haven_core::{CarpAddress, DEMOTED_ADVSKEW};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::IpAddr;
use std::path::Path;

/// Demote `vhid` (see the module docs).
pub(super) fn demote(run: &mut StepRun<'_>, vhid: u8) -> Result<Done, String> {
    let entry = entry(run, vhid)?;
    match (run.platform(), &entry.keepalived_track_file) {
        (Platform::FreeBsd, _) => freebsd(run, entry, true),
        (Platform::Linux, Some(file)) => track_file(run, file, true),
        (Platform::Linux, None) => ucarp_demote(run, entry),
    }
}

/// Lift the demotion of `vhid` (see the module docs).
pub(super) fn lift(run: &mut StepRun<'_>, vhid: u8) -> Result<Done, String> {
    let entry = entry(run, vhid)?;
    match (run.platform(), &entry.keepalived_track_file) {
        (Platform::FreeBsd, _) => freebsd(run, entry, false),
        (Platform::Linux, Some(file)) => track_file(run, file, false),
        (Platform::Linux, None) => Ok(Done::Already(format!(
            "ucarp keeps no demotion of vhid {vhid}: nothing to lift"
        ))),
    }
}

fn entry<'a>(run: &StepRun<'a>, vhid: u8) -> Result<&'a CarpAddress, String> {
    run.setup
        .carp
        .iter()
        .find(|entry| entry.vhid == vhid)
        .ok_or_else(|| format!("vhid {vhid} has no [[carp]] entry: its interface is not known"))
}

// ------------------------------------------------------------------------------------ FreeBSD

/// What `ifconfig <if>` says of one vhid: `carp: <STATE> vhid <n> advbase <b> advskew <s>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IfconfigVhid {
    pub state: String,
    pub advskew: u8,
}

/// The line of `vhid` in `ifconfig <if>` output (sbin/ifconfig/ifcarp.c `carp_status`).
pub(crate) fn ifconfig_vhid(text: &str, vhid: u8) -> Option<IfconfigVhid> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["carp:", state, "vhid", n, "advbase", _, "advskew", skew, ..]
                if n.parse() == Ok(vhid) =>
            {
                Some(IfconfigVhid {
                    state: (*state).to_owned(),
                    advskew: skew.parse().ok()?,
                })
            }
            _ => None,
        }
    })
}

fn freebsd(run: &mut StepRun<'_>, entry: &CarpAddress, demote: bool) -> Result<Done, String> {
    let ifconfig = run.tools().ifconfig.clone();
    let interface = entry.interface.as_str();
    let vhid = entry.vhid.to_string();
    let read = run.probe(&ifconfig, &[interface])?;
    if !read.success() {
        return Err(super::exit_failure(
            &crate::command::command_line(&ifconfig, &[interface]),
            &read,
            None,
        ));
    }
    let Some(now) = ifconfig_vhid(&String::from_utf8_lossy(&read.stdout), entry.vhid) else {
        return Err(format!(
            "`ifconfig {interface}` lists no vhid {vhid}: is CARP configured there?"
        ));
    };
    let wanted = if demote {
        DEMOTED_ADVSKEW
    } else {
        entry.advskew
    };
    let master = now.state == "MASTER";
    if now.advskew == wanted && !(demote && master) {
        return Ok(Done::Already(format!(
            "vhid {vhid} on {interface} is {} with advskew {wanted} already",
            now.state
        )));
    }
    let advskew = wanted.to_string();
    let mut args = vec![
        interface,
        "vhid",
        vhid.as_str(),
        "advskew",
        advskew.as_str(),
    ];
    if demote && master {
        args.extend(["state", "backup"]);
    }
    let output = run.act(&ifconfig, &args)?;
    if output.success() {
        Ok(Done::Ran)
    } else {
        Err(super::exit_failure(
            &crate::command::command_line(&ifconfig, &args),
            &output,
            None,
        ))
    }
}

// ----------------------------------------------------------------------------------- keepalived

fn track_file(run: &mut StepRun<'_>, file: &Path, demote: bool) -> Result<Done, String> {
    let value = if demote { "1" } else { "0" };
    let shown = file.display();
    if std::fs::read_to_string(file).is_ok_and(|text| text.trim() == value) {
        return Ok(Done::Already(format!("{shown} holds {value} already")));
    }
    let name = file
        .file_name()
        .ok_or_else(|| format!("{shown} names no file"))?;
    let temporary = file.with_file_name(format!(".{}.haven-new", name.to_string_lossy()));
    let written = std::fs::write(&temporary, format!("{value}\n"))
        .and_then(|()| std::fs::rename(&temporary, file));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("cannot write {value} into {shown}: {error}"));
    }
    run.note(format!("wrote {value} into {shown}"));
    Ok(Done::Ran)
}

// -------------------------------------------------------------------------------------- ucarp

/// The options of ucarp's `getopt_long` that take an argument (src/ucarp_p.h,
/// `GETOPT_OPTIONS`), as short letters and long names.
const UCARP_ARGUMENT_SHORT: &str = "isvpabkxudrfo";
const UCARP_ARGUMENT_LONG: [&str; 14] = [
    "interface",
    "srcip",
    "mcastip",
    "vhid",
    "pass",
    "addr",
    "advbase",
    "advskew",
    "upscript",
    "downscript",
    "deadratio",
    "facility",
    "passfile",
    "xparam",
];

/// ucarp's `--interface`, `--vhid` and `--addr` (or `-i`, `-v`, `-a`) from its arguments, as
/// getopt reads them: `--name=value`, `--name value`, `-xvalue`, `-x value`, letters grouped
/// (`-Pv1`), and nothing after `--`.
pub(crate) fn ucarp_options(argv: &[String]) -> UcarpOptions {
    let mut options = UcarpOptions::default();
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        let (name, value) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None if UCARP_ARGUMENT_LONG.contains(&long) => {
                    (long.to_owned(), words.next().cloned())
                }
                None => continue,
            }
        } else if let Some(letters) = word.strip_prefix('-') {
            let mut found = None;
            for (at, letter) in letters.char_indices() {
                if UCARP_ARGUMENT_SHORT.contains(letter) {
                    let rest = &letters[at + letter.len_utf8()..];
                    let value = if rest.is_empty() {
                        words.next().cloned()
                    } else {
                        Some(rest.to_owned())
                    };
                    found = Some((letter.to_string(), value));
                    break;
                }
            }
            match found {
                Some(found) => found,
                None => continue,
            }
        } else {
            continue;
        };
        let Some(value) = value else { continue };
        match name.as_str() {
            "interface" | "i" => options.interface = Some(value),
            "vhid" | "v" => options.vhid = value.parse().ok(),
            "addr" | "a" => options.address = value.parse().ok(),
            _ => {}
        }
    }
    options
}

/// What identifies a ucarp process's vhid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UcarpOptions {
    pub interface: Option<String>,
    pub vhid: Option<u8>,
    pub address: Option<IpAddr>,
}

impl UcarpOptions {
    /// Whether these are the options of `entry`'s ucarp (an interface or address ucarp was not
    /// given does not count against it).
    fn serve(&self, entry: &CarpAddress) -> bool {
        self.vhid == Some(entry.vhid)
            && self
                .interface
                .as_ref()
                .is_none_or(|interface| *interface == entry.interface)
            && self.address.is_none_or(|address| address == entry.address)
    }
}

fn ucarp_demote(run: &mut StepRun<'_>, entry: &CarpAddress) -> Result<Done, String> {
    let found: Vec<i32> = pids()?
        .into_iter()
        .filter(|pid| {
            argv_of(*pid).is_some_and(|argv| {
                argv.first()
                    .is_some_and(|program| Path::new(program).file_name() == Some("ucarp".as_ref()))
                    && ucarp_options(&argv).serve(entry)
            })
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "no ucarp process for vhid {} ({} on {}) was found in /proc",
            entry.vhid, entry.address, entry.interface
        ));
    }
    for pid in found {
        kill(Pid::from_raw(pid), Signal::SIGUSR2)
            .map_err(|error| format!("cannot signal ucarp (pid {pid}) with SIGUSR2: {error}"))?;
        run.note(format!(
            "sent SIGUSR2 to ucarp (pid {pid}, vhid {})",
            entry.vhid
        ));
    }
    Ok(Done::Ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn ucarp_options_are_read_as_getopt_reads_them() {
        let wanted = UcarpOptions {
            interface: Some("eth0".into()),
            vhid: Some(7),
            address: Some("10.0.0.9".parse().unwrap()),
        };
        for line in [
            "/usr/sbin/ucarp --interface=eth0 --vhid=7 --addr=10.0.0.9 --pass=x",
            "ucarp --interface eth0 --vhid 7 --addr 10.0.0.9",
            "ucarp -i eth0 -v 7 -a 10.0.0.9 -P",
            "ucarp -ieth0 -Pv7 -a10.0.0.9 -z",
            "ucarp -s 10.0.0.1 -i eth0 -p secret -v 7 -a 10.0.0.9 -u /up -d /down",
        ] {
            assert_eq!(ucarp_options(&argv(line)), wanted, "{line}");
        }
        // A value is never read as an option, and nothing after `--` counts.
        let options = ucarp_options(&argv("ucarp --pass -v -v 3 -- -v 9"));
        assert_eq!(options.vhid, Some(3));
        assert_eq!(ucarp_options(&argv("ucarp -Pz")), UcarpOptions::default());
    }

    #[test]
    fn ifconfig_lines_give_state_and_advskew() {
        let text = "em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\
                    \tinet 10.0.0.2 netmask 0xffffff00 broadcast 10.0.0.255\n\
                    \tcarp: MASTER vhid 1 advbase 1 advskew 0\n\
                    \tcarp: BACKUP vhid 12 advbase 1 advskew 240\n\
                    \t      peer 224.0.0.18 peer6 ff02::12\n";
        assert_eq!(
            ifconfig_vhid(text, 12),
            Some(IfconfigVhid {
                state: "BACKUP".into(),
                advskew: 240
            })
        );
        assert_eq!(ifconfig_vhid(text, 1).unwrap().state, "MASTER");
        assert_eq!(ifconfig_vhid(text, 2), None);
    }
}
