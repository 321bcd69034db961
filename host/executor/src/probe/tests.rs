use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn mount(device: &str, mountpoint: &str, fstype: &str) -> MountStatus {
    MountStatus {
        device: device.to_owned(),
        mountpoint: mountpoint.to_owned(),
        fstype: fstype.to_owned(),
    }
}

fn carp(vhid: u8, interface: &str, state: CarpState) -> CarpStatus {
    CarpStatus {
        vhid,
        interface: interface.to_owned(),
        state,
    }
}

fn malformed_line(error: ProbeError) -> (usize, String, String) {
    match error {
        ProbeError::Malformed {
            line_number,
            line,
            reason,
            ..
        } => (line_number, line, reason),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------ mountinfo

/// A Debian 12 container's /proc/self/mountinfo, as read on the machine these tests were
/// written on (cgroup v1 and v2 side by side, an nsfs-style bind with a root other than `/`).
const MOUNTINFO_SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k,nr_inodes=3083623,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
";

#[test]
fn mountinfo_real_sample() {
    let mounts = parse_mountinfo(MOUNTINFO_SAMPLE).unwrap();
    assert_eq!(mounts.len(), 11);
    assert_eq!(mounts[0], mount("proc", "/proc", "proc"));
    assert_eq!(mounts[5], mount("/dev/vda", "/", "ext4"));
    // A mount stacked on /dev/pts comes after the one it hides.
    assert_eq!(mounts[6], mount("devpts", "/dev/pts", "devpts"));
    assert_eq!(
        mounts[9],
        mount("cgroup2", "/sys/fs/cgroup/unified", "cgroup2")
    );
    // Optional fields (`shared:1`) before the `-`; a bind mount's root is not the mountpoint.
    assert_eq!(mounts[10], mount("/dev/vda", "/run/netns", "ext4"));
}

#[test]
fn mountinfo_optional_fields_and_escapes() {
    let text = "\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
100 27 0:50 / /hast/my\\040data rw,relatime shared:7 master:3 propagate_from:2 unbindable - ufs /dev/hast/test rw
101 27 0:51 / /srv/tab\\011new\\012back\\134slash rw - fuse.sshfs user@host:/some\\040dir rw,user_id=0
102 27 0:52 / /srv/a\\b\\0 rw - tmpfs none rw
103 27 0:53 net:[4026532275] /run/netns/blue rw shared:2 - nsfs nsfs rw

";
    let mounts = parse_mountinfo(text).unwrap();
    assert_eq!(
        mounts,
        vec![
            mount("/dev/root", "/mnt2", "ext3"),
            mount("/dev/hast/test", "/hast/my data", "ufs"),
            mount(
                "user@host:/some dir",
                "/srv/tab\tnew\nback\\slash",
                "fuse.sshfs"
            ),
            // A backslash without three octal digits stays.
            mount("none", "/srv/a\\b\\0", "tmpfs"),
            mount("nsfs", "/run/netns/blue", "nsfs"),
        ]
    );
}

#[test]
fn mountinfo_malformed_lines_are_named() {
    let good = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
    for (bad, why) in [
        ("28 27 0:25 / /mnt rw,relatime tmpfs none rw", "separator"),
        ("28 27 0:25 / rw - tmpfs none rw", "fewer than 6"),
        ("28 27 0:25 / /mnt rw -", "no filesystem type"),
        ("28 27 0:25 / /mnt rw - tmpfs", "no filesystem type"),
        ("x 27 0:25 / /mnt rw - tmpfs none rw", "not numbers"),
        ("28 27 025 / /mnt rw - tmpfs none rw", "major:minor"),
        ("28 27 0:25 / mnt rw - tmpfs none rw", "absolute"),
    ] {
        let text = format!("{good}{bad}\n{good}");
        let error = parse_mountinfo(&text).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(MOUNTINFO), "{message}");
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        let (line_number, line, reason) = malformed_line(error);
        assert_eq!(line_number, 2, "{bad}");
        assert_eq!(line, bad);
        assert!(reason.contains(why), "{bad}: {reason}");
    }
}

#[test]
fn mountinfo_empty_is_no_mounts() {
    assert_eq!(parse_mountinfo("").unwrap(), vec![]);
}

#[cfg(target_os = "linux")]
#[test]
fn read_mounts_finds_the_root() {
    let mounts = read_mounts(&linux_tools()).unwrap();
    assert!(
        mounts.iter().any(|m| m.mountpoint == "/"),
        "no / in {mounts:?}"
    );
}

// -------------------------------------------------------------------------------- mount -p

/// FreeBSD 14 `mount -p` on a ZFS install with a UFS HAST provider mounted: names shorter
/// than 8, 16 and 24 bytes padded with tabs, longer ones followed by one space.
const MOUNT_P_SAMPLE: &str = "\
zroot/ROOT/default\t/\t\t\tzfs\trw,multilabel,noatime,nfsv4acls \t0 0
devfs\t\t\t/dev\t\t\tdevfs\trw,multilabel\t0 0
/dev/gpt/efiboot0\t/boot/efi\t\tmsdosfs\trw\t\t0 0
zroot/usr/home\t\t/usr/home\t\tzfs\trw,multilabel,noatime,nfsv4acls \t0 0
fdescfs\t\t\t/dev/fd\t\t\tfdescfs\trw\t\t0 0
/dev/hast/test\t\t/hast/test\t\tufs\trw,noatime \t2 2
map -hosts\t\t/net\t\t\tautofs\trw,nosuid \t0 0
zroot/very/long/dataset/name /var/db/mysql/with/a/long/path zfs\trw,noatime \t0 0
/dev/md0\t\t/mnt/my\\040disk\t\tufs\trw\t\t2 2
";

#[test]
fn mount_p_real_format() {
    let mounts = parse_mount_p(MOUNT_P_SAMPLE).unwrap();
    assert_eq!(
        mounts,
        vec![
            mount("zroot/ROOT/default", "/", "zfs"),
            mount("devfs", "/dev", "devfs"),
            mount("/dev/gpt/efiboot0", "/boot/efi", "msdosfs"),
            mount("zroot/usr/home", "/usr/home", "zfs"),
            mount("fdescfs", "/dev/fd", "fdescfs"),
            mount("/dev/hast/test", "/hast/test", "ufs"),
            // autofs's source has a space; the tabs around it tell the fields apart.
            mount("map -hosts", "/net", "autofs"),
            mount(
                "zroot/very/long/dataset/name",
                "/var/db/mysql/with/a/long/path",
                "zfs"
            ),
            mount("/dev/md0", "/mnt/my disk", "ufs"),
        ]
    );
}

#[test]
fn mount_p_without_dump_and_pass_and_with_comments() {
    let text = "# fstab-like\n\n/dev/ada0p2 / ufs rw\n/dev/ada0p3 /var ufs rw 2\n";
    assert_eq!(
        parse_mount_p(text).unwrap(),
        vec![
            mount("/dev/ada0p2", "/", "ufs"),
            mount("/dev/ada0p3", "/var", "ufs")
        ]
    );
}

#[test]
fn mount_p_malformed_lines_are_named() {
    let good = "/dev/ada0p2\t\t/\t\t\tufs\trw\t\t1 1\n";
    for (bad, why) in [
        ("/dev/ada0p2 / ufs", "fewer than 4"),
        ("/dev/ada0p2 relative ufs rw 1 1", "absolute"),
        ("/dev/ada0p2 / ufs rw one 1", "not numbers"),
        // Spaces with no tabs to tell the fields apart.
        ("/dev/my disk /mnt/my disk ufs rw 0 0", "more than 6"),
    ] {
        let text = format!("{good}{bad}\n");
        let error = parse_mount_p(&text).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("mount -p"), "{message}");
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        let (line_number, line, reason) = malformed_line(error);
        assert_eq!((line_number, line.as_str()), (2, bad));
        assert!(reason.contains(why), "{bad}: {reason}");
    }
}

// -------------------------------------------------------------------------------- ifconfig

/// FreeBSD `ifconfig` on the seed's primary: two vhids on em0 (one with the newer `peer`
/// line), an interface in INIT after losing its link, and interfaces without CARP.
const IFCONFIG_SAMPLE: &str = "\
em0: flags=1008843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST,LOWER_UP> metric 0 mtu 1500
\toptions=4e524bb<RXCSUM,TXCSUM,VLAN_MTU,VLAN_HWTAGGING,JUMBO_MTU,VLAN_HWCSUM,LRO,WOL_MAGIC,VLAN_HWFILTER,VLAN_HWTSO,RXCSUM_IPV6,TXCSUM_IPV6,HWSTATS,MEXTPG>
\tether 08:00:27:6e:5a:01
\tinet 192.168.1.51 netmask 0xffffff00 broadcast 192.168.1.255
\tinet 192.168.1.50 netmask 0xffffff00 broadcast 192.168.1.255 vhid 1
\tinet 192.168.1.60 netmask 0xffffff00 broadcast 192.168.1.255 vhid 2
\tcarp: MASTER vhid 1 advbase 1 advskew 0
\t      peer 224.0.0.18 peer6 ff02::12
\tcarp: BACKUP vhid 2 advbase 1 advskew 100 key \"secret\"
\tmedia: Ethernet autoselect (1000baseT <full-duplex>)
\tstatus: active
\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
em1: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tinet 10.0.0.1 netmask 0xffffff00 broadcast 10.0.0.255 vhid 3
\tcarp: INIT vhid 3 advbase 1 advskew 0
\tstatus: no carrier
lo0: flags=1008049<UP,LOOPBACK,RUNNING,MULTICAST,LOWER_UP> metric 0 mtu 16384
\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>
\tinet 127.0.0.1 netmask 0xff000000
\tgroups: lo
";

#[test]
fn ifconfig_carp_lines() {
    assert_eq!(
        parse_ifconfig_carp(IFCONFIG_SAMPLE).unwrap(),
        vec![
            carp(1, "em0", CarpState::Master),
            carp(2, "em0", CarpState::Backup),
            carp(3, "em1", CarpState::Init),
        ]
    );
}

#[test]
fn ifconfig_without_carp_is_empty() {
    let text = "lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384\n\
                \tinet 127.0.0.1 netmask 0xff000000\n\
                \tvrrp: MASTER vrid 1 prio 100 interval 100\n";
    assert_eq!(parse_ifconfig_carp(text).unwrap(), vec![]);
    assert_eq!(parse_ifconfig_carp("").unwrap(), vec![]);
}

#[test]
fn ifconfig_malformed_carp_lines_are_named() {
    let header = "em0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n";
    for (text, line_number, why) in [
        (
            format!("{header}\tcarp: <UNKNOWN> vhid 1 advbase 1 advskew 0\n"),
            2,
            "state",
        ),
        (
            format!("{header}\tcarp: MASTER vhid 0 advbase 1 advskew 0\n"),
            2,
            "vhid",
        ),
        (
            format!("{header}\tcarp: MASTER vhid 256 advbase 1 advskew 0\n"),
            2,
            "vhid",
        ),
        (format!("{header}\tcarp: MASTER\n"), 2, "vhid"),
        (
            "\tcarp: MASTER vhid 1 advbase 1 advskew 0\n".to_owned(),
            1,
            "before any interface",
        ),
        (format!("{header}garbage\n"), 2, "header"),
    ] {
        let error = parse_ifconfig_carp(&text).unwrap_err();
        assert!(error.to_string().contains("ifconfig"), "{error}");
        let (number, line, reason) = malformed_line(error);
        assert_eq!(number, line_number, "{text}");
        assert_eq!(line, text.lines().nth(number - 1).unwrap());
        assert!(reason.contains(why), "{text}: {reason}");
    }
}

// ------------------------------------------------------------------------------- addresses

#[test]
fn local_addresses_include_loopback() {
    let present = local_addresses().unwrap();
    #[cfg(target_os = "linux")]
    let loopback = "lo";
    #[cfg(not(target_os = "linux"))]
    let loopback = "lo0";
    assert!(
        present.contains(&(loopback.to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))),
        "{present:?}"
    );
}

fn carp_address(vhid: u8, interface: &str, address: IpAddr) -> CarpAddress {
    CarpAddress {
        vhid,
        interface: interface.to_owned(),
        address,
        advskew: 0,
        keepalived_track_file: None,
    }
}

#[test]
fn carp_from_addresses_master_only_with_every_address() {
    let shared = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 50));
    let shared6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x50));
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 50));
    let present: BTreeSet<(String, IpAddr)> = [
        ("lo".to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ("eth0".to_owned(), shared),
        ("eth0".to_owned(), shared6),
        // On another interface than configured: does not count.
        ("eth0".to_owned(), other),
    ]
    .into_iter()
    .collect();
    let configured = [
        carp_address(1, "eth0", shared),
        carp_address(3, "eth1", other),
        carp_address(1, "eth0", shared6),
        carp_address(2, "eth0", IpAddr::V4(Ipv4Addr::new(192, 168, 1, 60))),
        // vhid 4: one of its two addresses only.
        carp_address(4, "eth0", shared),
        carp_address(4, "eth0", IpAddr::V4(Ipv4Addr::new(192, 168, 1, 70))),
    ];
    assert_eq!(
        carp_from_addresses(&configured, &present),
        vec![
            carp(1, "eth0", CarpState::Master),
            carp(3, "eth1", CarpState::Backup),
            carp(2, "eth0", CarpState::Backup),
            carp(4, "eth0", CarpState::Backup),
        ]
    );
    assert_eq!(carp_from_addresses(&[], &present), vec![]);
    assert_eq!(
        carp_from_addresses(&configured[..1], &BTreeSet::new()),
        vec![carp(1, "eth0", CarpState::Backup)]
    );
}

// -------------------------------------------------------------------------------- services

const TIMEOUT: Duration = Duration::from_secs(30);

/// Linux's default tools.
fn linux_tools() -> Tools {
    Tools::defaults(crate::system::Platform::Linux)
}

#[test]
fn status_commands() {
    let tools = linux_tools();
    assert_eq!(
        ServiceManager::Rc.status_command(&tools, "mysql-server"),
        (
            Path::new("/usr/sbin/service"),
            vec!["mysql-server", "onestatus"]
        )
    );
    assert_eq!(
        ServiceManager::Systemd.status_command(&tools, "mariadb@main"),
        (
            Path::new("/usr/bin/systemctl"),
            vec!["is-active", "--quiet", "mariadb@main"]
        )
    );
    assert_eq!(
        ServiceManager::SysV.status_command(&tools, "mysql"),
        (Path::new("/usr/sbin/service"), vec!["mysql", "status"])
    );
    // [executor.tools] is what runs.
    let configured = Tools {
        service: PathBuf::from("/opt/bin/service"),
        ..linux_tools()
    };
    assert_eq!(
        ServiceManager::SysV.status_command(&configured, "mysql").0,
        Path::new("/opt/bin/service")
    );
}

#[test]
fn detect_matches_the_os() {
    let detected = ServiceManager::detect();
    #[cfg(target_os = "freebsd")]
    assert_eq!(detected.unwrap(), ServiceManager::Rc);
    #[cfg(target_os = "linux")]
    assert_eq!(
        detected.unwrap(),
        if Path::new("/run/systemd/system").is_dir() {
            ServiceManager::Systemd
        } else {
            ServiceManager::SysV
        }
    );
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    assert!(matches!(detected, Err(ProbeError::Unsupported { .. })));
}

#[test]
fn bad_service_names_are_refused_before_anything_runs() {
    for manager in [
        ServiceManager::Rc,
        ServiceManager::Systemd,
        ServiceManager::SysV,
    ] {
        for bad in ["", "-h", "a b", "x;reboot", "$(id)", "../etc", ".hidden"] {
            // A zero timeout: had anything been run, this would be a timeout (or, with the
            // program missing, a spawn failure), not a refused name.
            match service_running(manager, &linux_tools(), bad, Duration::ZERO) {
                Err(ProbeError::BadName { name, message }) => {
                    assert_eq!(name, bad);
                    assert!(message.contains(&format!("`{bad}`")), "{message}");
                }
                other => panic!("{manager:?} {bad:?}: {other:?}"),
            }
        }
    }
}

/// Skip a test (with the reason on the test's output) unless `program` is installed.
fn installed(program: &Path) -> bool {
    let here = program.is_file();
    if !here {
        eprintln!("skipped: {} is not installed", program.display());
    }
    here
}

#[test]
fn sysv_service_that_does_not_exist_is_not_running() {
    let tools = linux_tools();
    let (program, _) = ServiceManager::SysV.status_command(&tools, "x");
    if !installed(program) {
        return;
    }
    let running = service_running(
        ServiceManager::SysV,
        &tools,
        "haven-no-such-service",
        TIMEOUT,
    );
    assert!(!running.unwrap());
}

#[test]
fn systemd_service_that_does_not_exist_is_not_running() {
    let tools = linux_tools();
    let (program, _) = ServiceManager::Systemd.status_command(&tools, "x");
    if !installed(program) {
        return;
    }
    // With or without systemd running, an unknown unit is not active (exit 3 or 1).
    let running = service_running(
        ServiceManager::Systemd,
        &tools,
        "haven-no-such-service",
        TIMEOUT,
    );
    assert!(!running.unwrap());
}

#[cfg(target_os = "freebsd")]
#[test]
fn rc_service_that_does_not_exist_is_not_running() {
    let tools = Tools::defaults(crate::system::Platform::FreeBsd);
    let running = service_running(ServiceManager::Rc, &tools, "haven-no-such-service", TIMEOUT);
    assert!(!running.unwrap());
}
