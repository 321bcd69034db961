//! The first process of a rig host: process 1 of the host's pid namespace.
//!
//! A pid namespace needs an init that reaps: daemons that double-fork (mysqld_safe's
//! mariadbd, ucarp's scripts) are re-parented to it, and a zombie left unreaped still looks
//! alive to `ps` and to init scripts that check a pid file. This one sets the host name, then
//! only reaps until it is killed. Killing it (the rig does, with SIGKILL, to cut a host's power)
//! makes the kernel kill every other process of the namespace.

#[cfg(target_os = "linux")]
fn main() {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: haven-rig-init <hostname>");
        std::process::exit(2);
    };
    if let Err(error) = nix::unistd::sethostname(&name) {
        eprintln!("haven-rig-init: cannot set the host name to {name}: {error}");
        std::process::exit(1);
    }
    // SIGCHLD stays blocked and is taken with sigwait, so no handler (and no unsafe) is needed.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if let Err(error) = chld.thread_block() {
        eprintln!("haven-rig-init: cannot block SIGCHLD: {error}");
        std::process::exit(1);
    }
    loop {
        // Reap every child that has ended, then wait for the next SIGCHLD.
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        let _ = chld.wait();
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("haven-rig-init: the rig runs on Linux only");
    std::process::exit(1);
}
