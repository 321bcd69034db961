//! `service start|stop|restart <name>` through rc(8), systemd or SysV init scripts.

use super::{Done, StepRun, service_retries};
use crate::probe::ServiceManager;
use haven_core::ServiceOp;
use std::path::Path;

/// The program and arguments that do `op` to `name` with `manager`.
pub(super) fn op_command<'t>(
    manager: ServiceManager,
    tools: &'t super::Tools,
    name: &'t str,
    op: ServiceOp,
) -> (&'t Path, Vec<&'t str>) {
    match manager {
        ServiceManager::Rc => {
            let verb = match op {
                ServiceOp::Start => "onestart",
                ServiceOp::Stop => "onestop",
                ServiceOp::Restart => "onerestart",
            };
            (&tools.service, vec![name, verb])
        }
        ServiceManager::Systemd => (&tools.systemctl, vec![verb(op), name]),
        ServiceManager::SysV => (&tools.service, vec![name, verb(op)]),
    }
}

fn verb(op: ServiceOp) -> &'static str {
    match op {
        ServiceOp::Start => "start",
        ServiceOp::Stop => "stop",
        ServiceOp::Restart => "restart",
    }
}

/// Whether `name` runs: the status command's exit status 0 means yes, any other status no;
/// `None` when it could not tell (not started, timed out, killed by a signal).
fn running(run: &mut StepRun<'_>, name: &str) -> Option<bool> {
    let (program, args) = run.setup.services.status_command(run.tools(), name);
    let output = run.probe(program, &args).ok()?;
    output.status.code().map(|code| code == 0)
}

/// `service start|stop|restart <name>`: start is done at once when the service runs, stop
/// when it does not; restart always runs.
pub(super) fn service(run: &mut StepRun<'_>, name: &str, op: ServiceOp) -> Result<Done, String> {
    if op != ServiceOp::Restart {
        match running(run, name) {
            Some(true) if op == ServiceOp::Start => {
                return Ok(Done::Already(format!("{name} is running already")));
            }
            Some(false) if op == ServiceOp::Stop => {
                return Ok(Done::Already(format!("{name} is not running")));
            }
            Some(_) => {}
            None => run.note(format!("whether {name} runs is not known: acting anyway")),
        }
    }
    let (program, args) = op_command(run.setup.services, run.tools(), name, op);
    let retries = service_retries(&run.setup.config, op);
    let goal = |run: &mut StepRun<'_>| match (op, running(run, name)) {
        (ServiceOp::Start, Some(true)) => Some(format!("{name} is running")),
        (ServiceOp::Stop, Some(false)) => Some(format!("{name} is not running")),
        _ => None,
    };
    run.act_with_retries(retries, program, &args, &goal)
}
