//! The two-host HA pair of the seed recipe, built for real on one Linux machine.
//!
//! ```text
//!   hasta 10.73.0.1 ──┐                      ┌── hastb 10.73.0.2
//!   (ucarp skew 0,    │   lan: bridge br0    │   (ucarp skew 100,
//!    hastd, havend)   ├──────────────────────┤    hastd, havend)
//!                     │  client 10.73.0.100  │
//!        shared address 10.73.0.50 (CARP vhid 1), MariaDB listens on it
//!        shared disk: ext4 on a loop device, /dev/hast/test when primary
//!
//!   with the witness (RigOptions::witness): a third bridge, br2, to the machine `witness`
//!   running a real etcd on 10.75.0.3:2379; hasta and hastb reach it as 10.75.0.1 and .2
//! ```
//!
//! Each host is a [`Machine`]; the `lan` machine holds the bridge and the `client` machine the
//! scenarios' database client. On each host, in this order (as at boot):
//! private `/run`, `/mnt` and `/dev/hast`, and its own `/etc/mysql`; the HAST stand-in
//! (`hastd`, then `hastctl role secondary test`); the failover logic (`havend` with the seed
//! policy, or the seed's shell script for comparison); and `ucarp` with Haven's shipped
//! `vip-up`/`vip-down` scripts. A [`MountWatch`] samples both hosts' mount tables for the
//! rig's whole life, so a double mount, however short, is seen.

use crate::disk::{DATADIR_IN_FS, SharedDisk};
use crate::log::Log;
use crate::mariadb::{self, Prober};
use crate::ns::Machine;
use crate::{RigError, bins, hast_standin};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The shared address (CARP vhid 1) and its prefix.
pub const VIP: &str = "10.73.0.50";
const PREFIX: u8 = 24;
const CLIENT_IP: &str = "10.73.0.100";
/// The HAST resource and where it is mounted.
pub const RESOURCE: &str = "test";
pub const MOUNTPOINT: &str = "/mnt/hast/test";
/// The CARP password (the seed's).
const CARP_PASSWORD: &str = "testpass";
/// hastd's control socket as the rig reaches it: `/var/run/hastctl` is `/run/hastctl` on
/// Debian, and a symbolic link cannot be followed through `/proc/<pid>/root` (an absolute
/// target resolves against the rig's own root).
const HASTD_SOCKET: &str = "/run/hastctl";
/// How long the rig waits for a host to be ready, a daemon to answer, and so on.
const READY: Duration = Duration::from_secs(30);

/// One of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `hasta`: the preferred master (advskew 0).
    A,
    /// `hastb`: the backup (advskew 100).
    B,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::A => "hasta",
            Side::B => "hastb",
        }
    }
    pub fn ip(self) -> &'static str {
        match self {
            Side::A => "10.73.0.1",
            Side::B => "10.73.0.2",
        }
    }
    fn advskew(self) -> u8 {
        match self {
            Side::A => 0,
            Side::B => 100,
        }
    }
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    /// Its port on the bridge, in the lan machine.
    fn lan_port(self) -> &'static str {
        match self {
            Side::A => "port-a",
            Side::B => "port-b",
        }
    }
    /// Its address on the pair's own link (the peer link runs there, as HAST's replication
    /// usually does on a crossover cable), and that link's port in the lan machine.
    pub fn sync_ip(self) -> &'static str {
        match self {
            Side::A => "10.74.0.1",
            Side::B => "10.74.0.2",
        }
    }
    fn sync_port(self) -> &'static str {
        match self {
            Side::A => "sync-a",
            Side::B => "sync-b",
        }
    }
    /// Its address on the witness's bridge, and its port there.
    fn witness_ip(self) -> &'static str {
        match self {
            Side::A => "10.75.0.1",
            Side::B => "10.75.0.2",
        }
    }
    fn witness_port(self) -> &'static str {
        match self {
            Side::A => "witness-a",
            Side::B => "witness-b",
        }
    }
}

/// The witness's etcd, as the hosts reach it.
pub const WITNESS_ENDPOINT: &str = "10.75.0.3:2379";
const WITNESS_IP: &str = "10.75.0.3";
/// The pair's name in the witness.
pub const WITNESS_PAIR: &str = "rig";
/// The rig's witness timing: renew 1000 + 2 × 2500 ≤ 8000 ms.
pub const WITNESS_TTL_S: u32 = 8;

/// What moves the service when CARP changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// `havend` with the seed policy.
    Haven,
    /// The seed recipe's `carp-hast-switch` shell script, adapted to Linux.
    SeedScript,
}

/// The rig's settings.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub failover: Failover,
    /// The seed policy's hold-down (`hold-down-ms`).
    pub hold_down_ms: u32,
    /// A third machine running etcd, and `[witness]` in both havends' configs.
    pub witness: bool,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            failover: Failover::Haven,
            hold_down_ms: 5000,
            witness: false,
        }
    }
}

/// The pair, the lan and the client; everything is torn down when it is dropped.
#[derive(Debug)]
pub struct Rig {
    options: RigOptions,
    // Dropped in field order: hosts first (their mounts go), then the disk, then the folder.
    hosts: [Option<Machine>; 2],
    client: Machine,
    /// The witness's machine (etcd), with [`RigOptions::witness`].
    witness: Option<Machine>,
    lan: Machine,
    watch: MountWatch,
    disk: SharedDisk,
    pub log: Arc<Log>,
    /// The lock that tells [`sweep_stale_rigs`] this rig is alive.
    _held: nix::fcntl::Flock<std::fs::File>,
    dir: tempfile::TempDir,
}

impl Rig {
    /// The lan, the client machine and the shared disk; no host yet ([`Rig::boot`]).
    pub fn new(options: RigOptions) -> Result<Rig, RigError> {
        let dir = tempfile::Builder::new()
            .prefix("haven-rig.")
            .tempdir()
            .map_err(|error| RigError::new(format!("cannot create the rig's folder: {error}")))?;
        sweep_stale_rigs();
        let held = hold(dir.path())?;
        let log = Log::new(&dir.path().join("rig.log"));
        let disk = SharedDisk::create(dir.path())?;
        log.note(format!(
            "shared disk {} on {}",
            disk.image().display(),
            disk.device()
        ));
        let lan = Machine::start("lan")?;
        for bridge in ["br0", "br1", "br2"] {
            lan.run("ip", &["link", "add", bridge, "type", "bridge"])?;
            lan.run("ip", &["link", "set", bridge, "up"])?;
        }
        let client = Machine::start("client")?;
        plug(&lan, &client, "port-client", CLIENT_IP)?;
        std::fs::create_dir_all(dir.path().join("hast"))
            .map_err(|error| RigError::new(format!("cannot create hast/: {error}")))?;
        // /dev/hast: where each host's private tmpfs for /dev/hast/<resource> goes.
        std::fs::create_dir_all("/dev/hast")
            .map_err(|error| RigError::new(format!("cannot create /dev/hast: {error}")))?;
        // The peer link's keys, made as an operator makes them.
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys)
            .map_err(|error| RigError::new(format!("cannot create keys/: {error}")))?;
        crate::command_output(
            std::process::Command::new(bins::rig_binary("havenctl")?)
                .args(["peer-keys", Side::A.name(), Side::B.name(), "--out"])
                .arg(&keys),
        )
        .map_err(|error| error.context("havenctl peer-keys"))?;
        let witness = if options.witness {
            // The client reaches etcd too: other pairs' havends run there (`start_other_pair`).
            plug_into(
                &lan,
                &client,
                ("witness-client", "br2"),
                ("eth1", "10.75.0.100"),
            )?;
            Some(start_witness(&lan, dir.path(), &log)?)
        } else {
            None
        };
        let watch = MountWatch::start(disk.device().to_owned());
        Ok(Rig {
            options,
            hosts: [None, None],
            client,
            witness,
            lan,
            watch,
            disk,
            log,
            _held: held,
            dir,
        })
    }

    /// What moves the service on this rig.
    pub fn failover(&self) -> Failover {
        self.options.failover
    }

    /// The settings it was built with.
    pub fn options(&self) -> &RigOptions {
        &self.options
    }

    /// The rig's folder (logs, state, configuration).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A host's own folder in the rig's (its havend's state, its `/etc/mysql`).
    pub fn host_dir(&self, side: Side) -> PathBuf {
        self.dir.path().join(side.name())
    }

    /// The host, if it is up.
    pub fn host(&self, side: Side) -> Option<&Machine> {
        self.hosts[side.index()].as_ref()
    }

    fn up(&self, side: Side) -> Result<&Machine, RigError> {
        self.host(side)
            .ok_or_else(|| RigError::new(format!("{} is down", side.name())))
    }

    /// The client machine.
    pub fn client(&self) -> &Machine {
        &self.client
    }

    /// Boot both hosts, as a pair boots, wait until hasta serves, and create the scenarios'
    /// schema. Both boot together: with the peer link configured, a lone host does not
    /// promote a copy it knows nothing about (`unknown-copy`'s default) until it hears its
    /// peer.
    pub fn boot_serving_pair(&mut self) -> Result<Prober, RigError> {
        self.boot(Side::A)
            .map_err(|error| error.context("boot hasta"))?;
        self.boot(Side::B)
            .map_err(|error| error.context("boot hastb"))?;
        let prober = self.prober()?;
        if !prober.wait_answering(crate::crash::FAILOVER_LIMIT) {
            return Err(RigError::new(format!(
                "hasta never served within {:?}",
                crate::crash::FAILOVER_LIMIT
            )));
        }
        self.log
            .note("the database answers on the shared address (hasta)");
        self.create_schema(Side::A)
            .map_err(|error| error.context("schema"))?;
        Ok(prober)
    }

    /// Boot a host: its mounts, the HAST stand-in, the failover logic, then ucarp.
    pub fn boot(&mut self, side: Side) -> Result<(), RigError> {
        let name = side.name();
        self.log.note(format!("booting {name}"));
        let mut machine = Machine::start(name)?;
        self.watch.set_pid(side, machine.pid());
        plug(&self.lan, &machine, side.lan_port(), side.ip())?;
        plug_into(
            &self.lan,
            &machine,
            (side.sync_port(), "br1"),
            ("eth1", side.sync_ip()),
        )?;
        if self.witness.is_some() {
            plug_into(
                &self.lan,
                &machine,
                (side.witness_port(), "br2"),
                ("eth2", side.witness_ip()),
            )?;
        }
        let host_dir = self.host_dir(side);
        let etc_mysql = host_dir.join("etc-mysql");
        mariadb::write_config(&etc_mysql, &format!("{MOUNTPOINT}/{DATADIR_IN_FS}"), VIP)?;
        for (what, args) in [
            (
                "/run",
                vec!["-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"],
            ),
            (
                "/mnt",
                vec!["-t", "tmpfs", "-o", "mode=755", "tmpfs", "/mnt"],
            ),
            (
                "/dev/hast",
                vec!["-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev/hast"],
            ),
        ] {
            machine
                .run("mount", &args)
                .map_err(|error| error.context(&format!("mounting {what}")))?;
        }
        machine.run("mkdir", &["-p", MOUNTPOINT, "/run/lock"])?;
        let etc_mysql = path_str(&etc_mysql)?;
        machine.run("mount", &["--bind", &etc_mysql, "/etc/mysql"])?;

        // The HAST stand-in, then the role every host gets at boot.
        let mut hastd = machine.command(bins::rig_binary("hastd")?);
        hastd
            .args(["--host", name, "--peer", side.peer().name()])
            .args(["--peer-address", side.peer().ip(), "--resource", RESOURCE])
            .args(["--local", self.disk.device()])
            .args(["--listen", "0.0.0.0"])
            .arg("--shared-dir")
            .arg(self.dir.path().join("hast"))
            .arg("--exec")
            .arg(bins::contrib("hast/hast-hook"))
            .env("HAVENCTL", bins::rig_binary("havenctl")?);
        machine.spawn(hastd, "hastd", &self.log)?;
        let socket = machine.path(HASTD_SOCKET);
        if !wait_until(READY, || socket.exists()) {
            return Err(RigError::new(format!(
                "{name}: hastd did not open its socket"
            )));
        }
        machine.run(
            path_str(&bins::rig_binary("hastctl")?)?.as_str(),
            &["role", "secondary", RESOURCE],
        )?;

        match self.options.failover {
            Failover::Haven => self.start_havend(&mut machine, side)?,
            Failover::SeedScript => {}
        }
        self.start_ucarp(&mut machine, side)?;
        self.hosts[side.index()] = Some(machine);
        Ok(())
    }

    fn start_havend(&self, machine: &mut Machine, side: Side) -> Result<(), RigError> {
        let config = self.host_dir(side).join("haven.toml");
        std::fs::write(&config, self.havend_config(side, false)?)
            .map_err(|error| RigError::new(format!("cannot write haven.toml: {error}")))?;
        let socket = machine.path("/run/haven/havend.sock");
        spawn_havend(machine, &config, "havend", &socket, &self.log)
            .map_err(|error| error.context(side.name()))
    }

    /// A host's `haven.toml`: the seed's two-host example, on Linux's tools.
    /// `allow_unsynchronised` is the operator's override.
    pub fn havend_config(
        &self,
        side: Side,
        allow_unsynchronised: bool,
    ) -> Result<String, RigError> {
        let state = path_str(&self.host_dir(side).join("state"))?;
        let hastctl = path_str(&bins::rig_binary("hastctl")?)?;
        let keys = path_str(&self.dir.path().join(format!("keys/{}.key", side.name())))?;
        let (own, peer) = (side.sync_ip(), side.peer().sync_ip());
        Ok(format!(
            r#"# {name}: the seed's two-host example on the rig's Linux hosts.
{policy}
[daemon]
state-dir = "{state}"
control-dir = "/run/haven"
executor = "linux"

[sources.hastctl]
program = "{hastctl}"
interval-ms = 1000
timeout-ms = 5000

[[carp]]
vhid = 1
interface = "eth0"
address = "{VIP}"

[executor]
storage = "hast"
service-manager = "sysv"

[executor.tools]
hastctl = "{hastctl}"

[peer]
address = "{peer}:7420"
listen = "{own}:7420"
key-file = "{keys}"
{witness}"#,
            name = side.name(),
            policy = self.policy_toml(allow_unsynchronised)?,
            witness = if self.witness.is_some() {
                format!("\n{}", witness_toml(WITNESS_PAIR))
            } else {
                String::new()
            },
        ))
    }

    /// The seed policy's entry, as every havend of the rig runs it: limits, grants, settings.
    fn policy_toml(&self, allow_unsynchronised: bool) -> Result<String, RigError> {
        let module = path_str(&bins::seed_policy())?;
        let hold_down = self.options.hold_down_ms;
        Ok(format!(
            r#"[limits]
deadline-ms = 50
memory-mib = 16

[[policy]]
name = "mysql"
module = "{module}"
on-failure = "alert"

[policy.grants]
hast-resources = ["{RESOURCE}"]
services = ["mariadb"]
timers = 1
carp-vhids = [1]
mounts = [{{ device = "/dev/hast/{RESOURCE}", mountpoint = "{MOUNTPOINT}", fstype = "ext4" }}]

[policy.settings]
vhid = 1
services = ["mariadb"]
hold-down-ms = {hold_down}
allow-unsynchronised-promotion = {allow_unsynchronised}

[[policy.settings.resources]]
name = "{RESOURCE}"
mountpoint = "{MOUNTPOINT}"
fstype = "ext4"
"#
        ))
    }

    fn start_ucarp(&self, machine: &mut Machine, side: Side) -> Result<(), RigError> {
        let (up, down) = match self.options.failover {
            Failover::Haven => (
                bins::contrib("ucarp/vip-up"),
                bins::contrib("ucarp/vip-down"),
            ),
            Failover::SeedScript => (
                crate::seed_script::up_script(),
                crate::seed_script::down_script(),
            ),
        };
        let mut ucarp = machine.command("ucarp");
        ucarp
            .args(["--interface=eth0", &format!("--srcip={}", side.ip())])
            .args(["--vhid=1", &format!("--pass={CARP_PASSWORD}")])
            .arg(format!("--addr={VIP}"))
            .args(["--advbase=1", &format!("--advskew={}", side.advskew())])
            .arg(format!("--upscript={}", path_str(&up)?))
            .arg(format!("--downscript={}", path_str(&down)?))
            .arg("--shutdown")
            .env("HAVENCTL", bins::rig_binary("havenctl")?)
            .env("HAVEN_VIP_PREFIX", PREFIX.to_string())
            .env("HAVEN_CONTROL_DIR", "/run/haven")
            .env("HASTCTL", bins::rig_binary("hastctl")?);
        machine.spawn(ucarp, "ucarp", &self.log)
    }

    /// Cut a host's power: every process of it killed at once, its mounts and interfaces
    /// gone.
    pub fn power_off(&mut self, side: Side) {
        self.watch.set_pid(side, 0);
        if let Some(mut machine) = self.hosts[side.index()].take() {
            self.log.note(format!("power off {}", side.name()));
            machine.power_off();
            self.log.note(format!("{} is off", side.name()));
        }
    }

    /// Cut a host off the lan or join it again: its bridge port stops or resumes forwarding.
    /// The host's own interface keeps its carrier (as when a switch between the hosts fails),
    /// so its CARP goes on advertising into the void instead of going down with the link.
    pub fn set_link(&self, side: Side, up: bool) -> Result<(), RigError> {
        let said = if up { "joined" } else { "cut off" };
        self.log.note(format!("{} {said}", side.name()));
        self.set_port(side.lan_port(), up)
    }

    /// A bridge port in the lan machine forwards (`up`) or not.
    fn set_port(&self, port: &str, up: bool) -> Result<(), RigError> {
        let state = if up { "3" } else { "0" };
        self.lan
            .run("bridge", &["link", "set", "dev", port, "state", state])
            .map(drop)
    }

    /// Stop a host's havend (SIGTERM, as `service havend restart` would) and start it again
    /// on the same state folder; returns once the new one answers.
    pub fn restart_havend(&mut self, side: Side) -> Result<(), RigError> {
        self.log
            .note(format!("restarting havend on {}", side.name()));
        let mut machine = self.hosts[side.index()]
            .take()
            .ok_or_else(|| RigError::new(format!("{} is down", side.name())))?;
        let stopped = machine
            .run("pkill", &["-TERM", "-x", "havend"])
            .map(drop)
            .and_then(|()| {
                if wait_until(READY, || machine.run("pgrep", &["-x", "havend"]).is_err()) {
                    Ok(())
                } else {
                    Err(RigError::new(format!(
                        "{}: havend did not stop",
                        side.name()
                    )))
                }
            });
        let started = stopped.and_then(|()| self.start_havend(&mut machine, side));
        self.hosts[side.index()] = Some(machine);
        started
    }

    /// Cut the pair's own link (the peer link's) or join it again; the lan, and CARP on it,
    /// stay as they are.
    pub fn set_peer_link(&self, up: bool) -> Result<(), RigError> {
        self.log.note(format!(
            "the peer link is {}",
            if up { "restored" } else { "cut" }
        ));
        for side in [Side::A, Side::B] {
            self.set_port(side.sync_port(), up)?;
        }
        Ok(())
    }

    /// Partition the two hosts from each other, or heal it: on the lan their bridge ports
    /// are isolated (each still reaches the client and nothing else isolated), and the pair's
    /// own link is cut. Both keep the witness.
    pub fn partition(&self, cut: bool) -> Result<(), RigError> {
        self.log.note(if cut {
            "the hosts are partitioned from each other"
        } else {
            "the partition heals"
        });
        let isolated = if cut { "on" } else { "off" };
        for side in [Side::A, Side::B] {
            self.lan.run(
                "bridge",
                &["link", "set", "dev", side.lan_port(), "isolated", isolated],
            )?;
        }
        self.set_peer_link(!cut)
    }

    /// A havend of another pair, `pair`, on the same etcd: monitor mode (dry run) on the
    /// client machine, with the seed policy; returns once it answers. For the fleet's listing.
    pub fn start_other_pair(&mut self, pair: &str) -> Result<(), RigError> {
        if self.witness.is_none() {
            return Err(RigError::new("the rig has no witness"));
        }
        let dir = self.dir.path().join(pair);
        let run = dir.join("run");
        // havend wants its control folder to itself: mode 0700.
        std::fs::create_dir_all(&run)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|error| RigError::new(format!("cannot create {pair}/run: {error}")))?;
        let config = dir.join("haven.toml");
        let text = format!(
            r#"# {pair}: another pair on the rig's witness, in monitor mode.
{policy}
[daemon]
state-dir = "{state}"
control-dir = "{control}"
executor = "dry-run"

[[carp]]
vhid = 1
interface = "eth0"
address = "{VIP}"

{witness}"#,
            policy = self.policy_toml(false)?,
            state = path_str(&dir)?.to_owned() + "/state",
            control = path_str(&run)?,
            witness = witness_toml(pair),
        );
        std::fs::write(&config, text)
            .map_err(|error| RigError::new(format!("cannot write {pair}'s config: {error}")))?;
        let label = format!("{pair}/havend");
        spawn_havend(
            &mut self.client,
            &config,
            &label,
            &run.join("havend.sock"),
            &self.log,
        )
    }

    /// Cut a host off the witness's bridge or join it again.
    pub fn set_witness_link(&self, side: Side, up: bool) -> Result<(), RigError> {
        let said = if up { "joined to" } else { "cut off from" };
        self.log.note(format!("{} {said} the witness", side.name()));
        self.set_port(side.witness_port(), up)
    }

    /// Stop the witness's etcd (SIGKILL: as a crash or a power cut of its machine).
    pub fn stop_witness(&self) -> Result<(), RigError> {
        let witness = self
            .witness
            .as_ref()
            .ok_or_else(|| RigError::new("the rig has no witness"))?;
        self.log.note("stopping etcd");
        witness.run("pkill", &["-KILL", "-x", "etcd"]).map(drop)
    }

    /// `etcdctl args…` on the witness's machine, against its etcd.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, RigError> {
        let witness = self
            .witness
            .as_ref()
            .ok_or_else(|| RigError::new("the rig has no witness"))?;
        let endpoint = format!("http://{WITNESS_ENDPOINT}");
        let mut all = vec!["--endpoints", endpoint.as_str()];
        all.extend_from_slice(args);
        witness.run("etcdctl", &all)
    }

    /// Stop a host's ucarp cleanly (SIGTERM: it runs its down script, `--shutdown`).
    pub fn stop_ucarp(&self, side: Side) -> Result<(), RigError> {
        self.log.note(format!("stopping ucarp on {}", side.name()));
        self.up(side)?
            .run("pkill", &["-TERM", "-x", "ucarp"])
            .map(drop)
    }

    /// `havenctl args…` on a host.
    pub fn havenctl(&self, side: Side, args: &[&str]) -> Result<String, RigError> {
        let havenctl = path_str(&bins::rig_binary("havenctl")?)?;
        let mut all = vec!["--control-dir", "/run/haven"];
        all.extend_from_slice(args);
        self.up(side)?.run(&havenctl, &all)
    }

    /// `havenctl args…` on a host as the unprivileged user `nobody` (uid and gid 65534, no
    /// supplementary groups), through util-linux's `setpriv`.
    pub fn havenctl_as_nobody(&self, side: Side, args: &[&str]) -> Result<String, RigError> {
        let havenctl = path_str(&bins::rig_binary("havenctl")?)?;
        let mut all = vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &havenctl,
            "--control-dir",
            "/run/haven",
        ];
        all.extend_from_slice(args);
        self.up(side)?.run("setpriv", &all)
    }

    /// The HAST stand-in's `hastctl args…` on a host.
    pub fn hastctl(&self, side: Side, args: &[&str]) -> Result<String, RigError> {
        let hastctl = path_str(&bins::rig_binary("hastctl")?)?;
        self.up(side)?.run(&hastctl, args)
    }

    /// A rig-only request to a host's HAST stand-in (e.g. `sync-interrupted test`).
    pub fn hast_request(&self, side: Side, line: &str) -> Result<String, RigError> {
        let socket = self.up(side)?.path(HASTD_SOCKET);
        self.log.note(format!("hastd on {}: {line}", side.name()));
        hast_standin::request(&socket, line).map_err(RigError::new)
    }

    /// A host's havend journal, one JSON value per line (it outlives the host: the state
    /// folder is the rig's).
    pub fn journal(&self, side: Side) -> Vec<serde_json::Value> {
        let path = self.host_dir(side).join("state/journal.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Whether the shared disk is mounted on the host now.
    pub fn mounted(&self, side: Side) -> bool {
        self.host(side)
            .is_some_and(|host| host.has_mounted(MOUNTPOINT))
    }

    /// How many times the watch saw the disk mounted on both hosts at once (it should be 0).
    pub fn double_mounts(&self) -> u64 {
        self.watch.both.load(Ordering::Relaxed)
    }

    /// A prober of the database on the shared address, from the client machine.
    pub fn prober(&self) -> Result<Prober, RigError> {
        Prober::new(&self.client, VIP)
    }

    /// Create the scenarios' schema on the host that serves.
    pub fn create_schema(&self, side: Side) -> Result<(), RigError> {
        mariadb::create_schema(self.up(side)?)
    }

    /// Whether MariaDB runs on the host (`mariadbd` among its processes).
    pub fn database_runs(&self, side: Side) -> bool {
        self.host(side)
            .is_some_and(|host| host.run("pgrep", &["-x", "mariadbd"]).is_ok())
    }
}

/// `[witness]` for pair `pair`, on the rig's etcd and timing.
fn witness_toml(pair: &str) -> String {
    format!(
        "[witness]\nendpoints = [\"http://{WITNESS_ENDPOINT}\"]\npair = \"{pair}\"\n\
         ttl-s = {WITNESS_TTL_S}\nrenew-ms = 1000\ntimeout-ms = 2500\n"
    )
}

/// Start havend on `machine` with `config`, its output logged as `label`, and wait until its
/// control socket (`socket`, as the rig sees it) exists.
fn spawn_havend(
    machine: &mut Machine,
    config: &Path,
    label: &str,
    socket: &Path,
    log: &Arc<Log>,
) -> Result<(), RigError> {
    let mut havend = machine.command(bins::rig_binary("havend")?);
    havend.arg("--config").arg(config);
    machine.spawn(havend, label, log)?;
    if wait_until(READY, || socket.exists()) {
        Ok(())
    } else {
        Err(RigError::new(format!(
            "{label} did not open its control socket {}",
            socket.display()
        )))
    }
}

/// The witness's machine on br2, running a real etcd (Debian's etcd-server) with its data in
/// the rig's folder; returns once etcd says it is healthy.
fn start_witness(lan: &Machine, dir: &Path, log: &Arc<Log>) -> Result<Machine, RigError> {
    let mut witness = Machine::start("witness")?;
    plug_into(lan, &witness, ("port-witness", "br2"), ("eth0", WITNESS_IP))?;
    let mut etcd = witness.command(haven_test_artifacts::etcd::ETCD);
    etcd.args(haven_test_artifacts::etcd::arguments(
        "witness",
        &dir.join("etcd"),
        WITNESS_ENDPOINT,
        &format!("{WITNESS_IP}:2380"),
        None,
    ));
    witness.spawn(etcd, "etcd", log)?;
    let endpoint = format!("http://{WITNESS_ENDPOINT}");
    let healthy = || {
        witness
            .run("etcdctl", &["--endpoints", &endpoint, "endpoint", "health"])
            .is_ok()
    };
    if wait_until(READY, healthy) {
        log.note("etcd (the witness) is healthy");
        Ok(witness)
    } else {
        Err(RigError::new("the witness's etcd did not become healthy"))
    }
}

/// The file a live rig holds locked in its folder.
const ALIVE: &str = "rig.alive";

/// Lock `dir`'s [`ALIVE`] file for the rig's life.
fn hold(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, RigError> {
    let file = std::fs::File::create(dir.join(ALIVE))
        .map_err(|error| RigError::new(format!("cannot create {ALIVE}: {error}")))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, error)| RigError::new(format!("cannot lock {ALIVE}: {error}")))
}

/// Remove what rigs whose program died without cleaning up left behind (a kill -9, or
/// Ctrl-C on the demo): their machines died with them, but not their loop devices and
/// folders. A rig is stale when nobody holds its [`ALIVE`] lock.
fn sweep_stale_rigs() {
    let stale = |dir: &Path| {
        std::fs::File::open(dir.join(ALIVE)).is_ok_and(|file| {
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
        })
    };
    let loops = crate::command_output(std::process::Command::new("losetup").args([
        "--list",
        "--noheadings",
        "--output",
        "NAME,BACK-FILE",
    ]))
    .unwrap_or_default();
    for line in loops.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(file)) = (fields.next(), fields.next()) else {
            continue;
        };
        let dir = Path::new(file).parent().unwrap_or(Path::new("/"));
        let ours = dir
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("haven-rig."));
        if ours && stale(dir) {
            let _ = crate::command_output(
                std::process::Command::new("losetup").args(["--detach", device]),
            );
        }
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("haven-rig."));
        if ours && stale(&path) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Connect `machine` to the lan's bridge with a veth pair (`eth0` inside, `port` on the
/// bridge) and give it `address`.
fn plug(lan: &Machine, machine: &Machine, port: &str, address: &str) -> Result<(), RigError> {
    plug_into(lan, machine, (port, "br0"), ("eth0", address))
}

/// [`plug`] into `bridge`, as `interface` on the machine.
fn plug_into(
    lan: &Machine,
    machine: &Machine,
    (port, bridge): (&str, &str),
    (interface, address): (&str, &str),
) -> Result<(), RigError> {
    // In the lan's network only: `netns <pid>` names the machine by the rig's own pids.
    crate::command_output(lan.net_command("ip").args([
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        interface,
        "netns",
        &machine.pid().to_string(),
    ]))
    .map_err(|error| error.context("lan"))?;
    lan.run("ip", &["link", "set", port, "master", bridge])?;
    lan.run("ip", &["link", "set", port, "up"])?;
    machine.run(
        "ip",
        &[
            "address",
            "add",
            &format!("{address}/{PREFIX}"),
            "dev",
            interface,
        ],
    )?;
    machine.run("ip", &["link", "set", interface, "up"])?;
    Ok(())
}

fn path_str(path: &Path) -> Result<String, RigError> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| RigError::new(format!("{} is not UTF-8", path.display())))
}

/// Wait until `condition` holds, looking every 2 ms, for at most `timeout`; whether it did.
pub fn wait_until(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Samples both hosts' mount tables every millisecond or so, for the rig's whole life, and
/// counts the samples in which the shared disk was mounted on both.
#[derive(Debug)]
struct MountWatch {
    pids: Arc<[AtomicI32; 2]>,
    both: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MountWatch {
    fn start(device: String) -> MountWatch {
        let pids = Arc::new([AtomicI32::new(0), AtomicI32::new(0)]);
        let both = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pids, both, stop) = (Arc::clone(&pids), Arc::clone(&both), Arc::clone(&stop));
            std::thread::spawn(move || {
                // The device as mountinfo shows it: /dev/hast/<res> (the stand-in's node) or
                // the loop device itself.
                let shows = |line: &str| {
                    let source = line
                        .split(" - ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').nth(1));
                    source == Some(device.as_str())
                        || source == Some(&format!("/dev/hast/{RESOURCE}"))
                };
                let mounted = |pid: i32| {
                    pid != 0
                        && std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                            .is_ok_and(|table| table.lines().any(shows))
                };
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = (
                        pids[0].load(Ordering::Relaxed),
                        pids[1].load(Ordering::Relaxed),
                    );
                    if mounted(a) && mounted(b) {
                        both.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        MountWatch {
            pids,
            both,
            stop,
            thread: Some(thread),
        }
    }

    fn set_pid(&self, side: Side, pid: i32) {
        self.pids[side.index()].store(pid, Ordering::Relaxed);
    }
}

impl Drop for MountWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
