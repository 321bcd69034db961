"""carp-hast-switch-core: the seed policy's core, ported to Python. A faithful SUBSET.

The seed (policies/carp-hast-switch, Rust) follows CARP with HAST resources, their filesystems
and services. This port carries its core rules over, line for line, with the same key-value
keys, plans, timeouts and messages, so the seed's own scenario files run unchanged against it:

- following CARP: MASTER promotes, BACKUP and INIT demote; a vhid, or a legacy carp(4)
  interface's link (`carp-interface`);
- the flap hold-down: act on the leading edge, then settle on a timer (`hold-down-ms`);
- promotion and demotion plans computed from queries, so they are idempotent;
- a failed promotion demotes with a critical alert and is not retried until the next CARP
  event; a failed demotion alerts and stops;
- startup converges to the current CARP state, without the hold-down.

NOT ported (the Rust seed has them): the sync safety that refuses to promote onto a copy not
known to be complete (hastd's hooks and the peer's facts), the peer link, the operator's
requests (switchover, maintenance, accept-incomplete) and the witness. Their settings
(`allow-unsynchronised-promotion`, `unknown-copy`) are accepted and have no effect, and their
events are no action. This port promotes whenever CARP says master: do not run it on a pair
whose copy may be incomplete.
"""

import haven_policy
from haven_policy import Plan, Policy, types

DESIRED = "desired"
SETTLE_PENDING = "settle-pending"
LAST_ACT_MS = "last-act-ms"
PROMOTION_FAILED = "promotion-failed"
SETTLE_TIMER = "settle"

TIMEOUTS = {"worker-gone": 10_000, "device": 30_000, "fsck": 600_000, "mount": 60_000,
            "service": 120_000, "role": 30_000}
SETTINGS = {"vhid", "carp-interface", "services", "hold-down-ms", "force-unmount",
            "allow-unsynchronised-promotion", "unknown-copy", "timeouts", "resources"}

ROLE = {types.HastRole.INIT: "init", types.HastRole.PRIMARY: "primary",
        types.HastRole.SECONDARY: "secondary"}


class Resource:
    def __init__(self, raw):
        unknown = set(raw) - {"name", "device", "mountpoint", "fstype"}
        if unknown:
            raise ValueError(f"unknown resource field(s): {', '.join(sorted(unknown))}")
        self.name = raw["name"]
        self.device = raw.get("device") or f"/dev/hast/{self.name}"
        self.mountpoint = raw["mountpoint"]
        self.fstype = raw["fstype"]


def _check_name(what, name, problems):
    if not name or any(c.isspace() or c == "/" for c in name):
        problems.append(f"{what} `{name}` is not valid: it is empty or contains whitespace or `/`")


class CarpHastSwitchCore(Policy):
    @staticmethod
    def info():
        return types.PolicyInfo(name="carp-hast-switch-core", version="0.1.0")

    def __init__(self, settings):
        unknown = set(settings) - SETTINGS
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        self.vhid = settings.get("vhid")
        self.carp_interface = settings.get("carp-interface")
        self.services = list(settings.get("services", []))
        self.hold_down_ms = int(settings.get("hold-down-ms", 5_000))
        self.force_unmount = bool(settings.get("force-unmount", True))
        self.timeouts = dict(TIMEOUTS, **settings.get("timeouts", {}))
        self.resources = [Resource(raw) for raw in settings["resources"]]
        problems = []
        if self.vhid is None and self.carp_interface is None:
            problems.append("give `vhid` or `carp-interface` (or both): there is nothing to follow")
        if self.vhid == 0:
            problems.append("vhid must be between 1 and 255")
        if not self.resources:
            problems.append("resources must name at least one HAST resource")
        for resource in self.resources:
            _check_name("resource name", resource.name, problems)
        for service in self.services:
            _check_name("service", service, problems)
        for name, value in self.timeouts.items():
            if value == 0:
                problems.append(f"timeouts.{name} must be more than 0 ms")
        if problems:
            raise ValueError(f"invalid settings: {'; '.join(problems)}")

    # ------------------------------------------------------------------------------ events

    def handle(self, event, host):
        if isinstance(event, types.Event_Startup):
            return self.on_startup(event.value, host)
        if isinstance(event, (types.Event_CarpChanged, types.Event_CarpLink)):
            return self.on_carp(event, host)
        if isinstance(event, types.Event_TimerFired):
            return self.settle(host) if event.value == SETTLE_TIMER else Plan.none()
        if isinstance(event, types.Event_StepFailed):
            return self.on_step_failed(event.value, host)
        return Plan.none()

    def on_carp(self, event, host):
        target = self.target_of(event)
        if target is None:
            return Plan.none()
        host.kv_remove(PROMOTION_FAILED)
        host.kv_set(DESIRED, target)
        if host.kv_get(SETTLE_PENDING) is None and self.hold_down_over(host):
            plan = self.converge(target, host)
            if not plan.is_none():
                self.record_action(host)
            return plan
        host.kv_set(SETTLE_PENDING, "1")
        return Plan.builder().set_timer(SETTLE_TIMER, self.hold_down_ms).build()

    def settle(self, host):
        self.record_action(host)
        target = host.kv_get(DESIRED)
        return self.converge(target, host) if target in ("master", "backup") else Plan.none()

    def on_startup(self, state, host):
        host.kv_remove(PROMOTION_FAILED)
        target = self.current_target(host)
        host.kv_remove(SETTLE_PENDING)
        host.kv_remove(LAST_ACT_MS)
        if target is None:
            return Plan.none()
        host.kv_set(DESIRED, target)
        return self.converge(target, host)

    def on_step_failed(self, failure, host):
        action = failure.step.action
        phase = _phase(action)
        if phase == "promotion":
            host.kv_set(PROMOTION_FAILED, failure.reason)
            message = f"promotion failed at {_describe(action)}: {failure.reason}; demoting"
            alert = Plan.builder().alert(types.AlertSeverity.CRITICAL, message).build()
            return Plan(alert.steps + self.demote(host).steps)
        if phase == "demotion":
            message = (
                f"demotion failed at {_describe(action)}: {failure.reason}. This host may still "
                "hold the HAST resources (services running, filesystem mounted or role primary): "
                "a human must look before the peer uses the data. Nothing more is done "
                "automatically.")
            return Plan.builder().alert(types.AlertSeverity.CRITICAL, message).build()
        if isinstance(action, types.Action_SetTimer) and action.value.name == SETTLE_TIMER:
            message = (f"{_describe(action)} failed: {failure.reason}; acting on the settled "
                       "CARP state now")
            warning = Plan.builder().alert(types.AlertSeverity.WARNING, message).build()
            return Plan(warning.steps + self.settle(host).steps)
        return Plan.none()

    # ------------------------------------------------------------------------------ CARP

    def target_of(self, event):
        if isinstance(event, types.Event_CarpChanged) and event.value.vhid == self.vhid:
            return "master" if event.value.state == types.CarpState.MASTER else "backup"
        if isinstance(event, types.Event_CarpLink) and event.value.interface == self.carp_interface:
            return "master" if event.value.up else "backup"
        return None

    def current_target(self, host):
        if self.vhid is None:
            desired = host.kv_get(DESIRED)
            return desired if desired in ("master", "backup") else None
        state = host.carp_state(self.vhid)
        if state is None:
            return None
        return "master" if state == types.CarpState.MASTER else "backup"

    def hold_down_over(self, host):
        now = host.now_ms()
        last = host.kv_get(LAST_ACT_MS)
        if last is None or not last.isdigit() or int(last) > now:
            return True
        return now - int(last) >= self.hold_down_ms

    @staticmethod
    def record_action(host):
        host.kv_remove(SETTLE_PENDING)
        host.kv_set(LAST_ACT_MS, str(host.now_ms()))

    # ------------------------------------------------------------------------------ plans

    def converge(self, target, host):
        if target == "master":
            if host.kv_get(PROMOTION_FAILED) is not None:
                return Plan.none()
            return self.promote(host)
        return self.demote(host)

    def promote(self, host):
        t = self.timeouts
        plan = Plan.builder()
        for resource in self.resources:
            takes_role = host.hast_status(resource.name).role != types.HastRole.PRIMARY
            if takes_role:
                plan.wait_worker_gone(resource.name, types.HastRole.SECONDARY, t["worker-gone"])
                plan.hast_role(resource.name, types.HastRole.PRIMARY, t["role"])
            if takes_role or not host.device_exists(resource.device):
                plan.wait_device(resource.device, t["device"])
            if not self.holds_mount(resource, host):
                plan.fsck(resource.device, resource.fstype, True, t["fsck"])
                plan.mount(resource.device, resource.mountpoint, resource.fstype, t["mount"])
        for service in self.services:
            if not host.service_running(service):
                plan.start_service(service, t["service"])
        return plan.build()

    def demote(self, host):
        t = self.timeouts
        plan = Plan.builder()
        for service in reversed(self.services):
            if host.service_running(service):
                plan.stop_service(service, t["service"])
        for resource in self.resources:
            if self.holds_mount(resource, host):
                plan.unmount(resource.mountpoint, self.force_unmount, t["mount"])
            if host.hast_status(resource.name).role != types.HastRole.SECONDARY:
                plan.hast_role(resource.name, types.HastRole.SECONDARY, t["role"])
        return plan.build()

    @staticmethod
    def holds_mount(resource, host):
        mount = host.mounted(resource.mountpoint)
        if mount is None:
            return False
        if mount.device == resource.device:
            return True
        raise ValueError(
            f"{resource.mountpoint} has {mount.device} mounted, not {resource.device} of HAST "
            f"resource `{resource.name}`; unmount it or fix the settings")


def _phase(action):
    if isinstance(action, types.Action_SetHastRole):
        return {types.HastRole.PRIMARY: "promotion",
                types.HastRole.SECONDARY: "demotion"}.get(action.value.role, "other")
    if isinstance(action, (types.Action_WaitForDevice, types.Action_WaitHastWorkerGone,
                           types.Action_Fsck, types.Action_Mount)):
        return "promotion"
    if isinstance(action, types.Action_Service):
        return "demotion" if action.value.op == types.ServiceOp.STOP else "promotion"
    if isinstance(action, types.Action_Unmount):
        return "demotion"
    return "other"


SERVICE_OP = {types.ServiceOp.START: "onestart", types.ServiceOp.STOP: "onestop",
              types.ServiceOp.RESTART: "onerestart"}

# A step as the seed's alerts name it, by the action's type.
DESCRIBE = {
    types.Action_SetHastRole: lambda v: f"`hastctl role {ROLE[v.role]} {v.resource}`",
    types.Action_WaitForDevice: lambda v: f"waiting for {v} to appear",
    types.Action_WaitHastWorkerGone:
        lambda v: f"waiting for the {ROLE[v.role]} worker of `{v.resource}` to exit",
    types.Action_Fsck: lambda v: f"`fsck -t {v.fstype} {v.device}`",
    types.Action_Mount: lambda v: f"`mount -t {v.fstype} {v.device} {v.mountpoint}`",
    types.Action_Unmount: lambda v: f"`umount {'-f ' if v.force else ''}{v.mountpoint}`",
    types.Action_Service: lambda v: f"`service {v.name} {SERVICE_OP[v.op]}`",
    types.Action_SetTimer: lambda v: f"arming timer `{v.name}`",
    types.Action_CancelTimer: lambda v: f"cancelling timer `{v}`",
    types.Action_DemoteCarp: lambda v: f"demoting CARP vhid {v}",
    types.Action_LiftCarpDemotion: lambda v: f"lifting the demotion of CARP vhid {v}",
}


def _describe(action):
    describe = DESCRIBE.get(type(action))
    return describe(action.value) if describe else "an alert"


Handler = haven_policy.export(CarpHastSwitchCore)
