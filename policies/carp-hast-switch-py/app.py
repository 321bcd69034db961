"""carp-hast-switch, ported to Python: the seed policy, rule for rule.

The seed (policies/carp-hast-switch, Rust) follows CARP with HAST resources, their filesystems
and services. This port carries every rule over, with the same key-value keys, plans, timeouts
and messages, so the seed's own scenario files run unchanged against it (all 17 pass):

- following CARP: MASTER promotes, BACKUP and INIT demote; a vhid, or a legacy carp(4)
  interface's link (`carp-interface`);
- the flap hold-down: act on the leading edge, then settle on a timer (`hold-down-ms`);
- promotion and demotion plans computed from queries, so they are idempotent;
- a failed promotion demotes with a critical alert and is not retried until the next CARP
  event; a failed demotion alerts and stops;
- startup converges to the current CARP state, without the hold-down;
- the sync safety: what is known of each resource's local copy (this host's hastd hooks, the
  peer's relayed hooks and status, a lost store), kept as `sync:<resource>`, and the refusal
  to promote onto a copy not known to be complete (`allow-unsynchronised-promotion`,
  `unknown-copy`); a split-brain's alert; a refused promotion decided again when the peer is
  heard or goes away;
- the operator's requests: a switchover only when the peer can take over with nothing lost,
  maintenance on and off with the CARP demotion they hold, `promote --accept-incomplete`;
- the witness: a serving host that loses the leader key demotes unless its peer vouches (or
  after `isolated-serve-ms`), and demotes when the peer holds the key.
"""

import haven_policy
from haven_policy import Plan, Policy, types

LogLevel = types.LogLevel

DESIRED = "desired"
SETTLE_PENDING = "settle-pending"
LAST_ACT_MS = "last-act-ms"
PROMOTION_FAILED = "promotion-failed"
SETTLE_TIMER = "settle"

TIMEOUTS = {"worker-gone": 10_000, "device": 30_000, "fsck": 600_000, "mount": 60_000,
            "service": 120_000, "role": 30_000}
UNKNOWN_REFUSED = "sync-waiting-for-peer"
DEMOTED = "carp-demoted"
ISOLATED_TIMER = "witness-isolated"
VOUCH_FRESH_MS = 2000
SYNC_STATES = ("syncing", "synced", "interrupted", "split-brain", "behind", "unknown")
# The sync hooks: the state each records, and the word hastd's `exec` hook gets for it.
SYNC_HOOKS = {types.HastHook_SyncStart: ("syncing", "syncstart"),
              types.HastHook_SyncDone: ("synced", "syncdone"),
              types.HastHook_SyncInterrupted: ("interrupted", "syncintr")}

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


class CarpHastSwitch(Policy):
    @staticmethod
    def info():
        return types.PolicyInfo(name="carp-hast-switch-py", version="0.1.0")

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
        self.allow_unsynchronised = bool(settings.get("allow-unsynchronised-promotion", False))
        self.unknown_copy = settings.get("unknown-copy", "refuse")
        self.resources = [Resource(raw) for raw in settings["resources"]]
        problems = []
        if self.vhid is None and self.carp_interface is None:
            problems.append("give `vhid` or `carp-interface` (or both): there is nothing to follow")
        if self.vhid == 0:
            problems.append("vhid must be between 1 and 255")
        if self.unknown_copy not in ("refuse", "promote"):
            raise ValueError(f"unknown-copy must be \"refuse\" or \"promote\", not "
                             f"{self.unknown_copy!r}")
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
        if isinstance(event, types.Event_HastHook):
            return self.on_hook(event.value, host)
        if isinstance(event, types.Event_TimerFired):
            if event.value == SETTLE_TIMER:
                return self.settle(host)
            if event.value == ISOLATED_TIMER:
                return self.on_isolated_timer(host)
            host.log(LogLevel.DEBUG, f"ignoring unknown timer `{event.value}`")
            return Plan.none()
        if isinstance(event, types.Event_StepFailed):
            return self.on_step_failed(event.value, host)
        if isinstance(event, types.Event_Peer):
            return self.on_peer(event.value, host)
        if isinstance(event, types.Event_Operator):
            return self.on_operator(event.value, host)
        if isinstance(event, types.Event_Witness):
            return self.on_witness(event.value, host)
        return Plan.none()

    def on_hook(self, hook, host):
        """A hastd hook: the sync tracking records it. A `disconnect` of one of our resources
        also retries a promotion that failed, when CARP still wants this host master."""
        plan = self.sync_on_hook(hook, host)
        if not isinstance(hook, types.HastHook_Disconnect):
            return plan
        resource = hook.value
        refused = (plan.is_none() and self.resource(resource) is not None
                   and host.kv_get(PROMOTION_FAILED) is not None)
        why = (f"HAST resource `{resource}`: the peer went away while CARP wants this host "
               "master after a failed promotion; trying again")
        again = self.decide_again(refused, why, host)
        return plan if again is None else again

    def decide_again(self, refused, why, host):
        """A refused or failed promotion, decided again when CARP still wants this host master
        and no settle timer is pending. None: not now."""
        again = (refused and host.kv_get(SETTLE_PENDING) is None
                 and self.current_target(host) == "master")
        if not again:
            return None
        host.log(LogLevel.INFO, why)
        host.kv_remove(PROMOTION_FAILED)
        return self.converge("master", host)

    def on_peer(self, event, host):
        """The peer link brought news: record what it says about our copy, and try again a
        promotion refused because nothing was known, once the peer is heard."""
        self.sync_on_peer(event, host)
        if isinstance(event, (types.PeerEvent_Down, types.PeerEvent_FactsChanged)):
            plan = self.recheck_vouching(host)
            if plan is not None:
                return plan
        if isinstance(event, types.PeerEvent_FactsChanged):
            plan = self.move_away_in_maintenance(host)
            if not plan.is_none():
                return plan
        refused = (isinstance(event, types.PeerEvent_FactsChanged)
                   and self.peer_heard_after_unknown_refusal(host))
        why = "the peer is heard now; deciding the refused promotion again"
        again = self.decide_again(refused, why, host)
        return Plan.none() if again is None else again

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
        if state.state_lost is not None:
            self.on_state_lost(state.state_lost.reason, host)
        if state.interrupted is not None:
            step = _describe(state.interrupted.step.action)
            host.log(LogLevel.INFO,
                     f"{step} was interrupted; converging from the current state")
        host.kv_remove(PROMOTION_FAILED)
        target = self.current_target(host)
        host.kv_remove(SETTLE_PENDING)
        host.kv_remove(LAST_ACT_MS)
        if target is not None:
            host.kv_set(DESIRED, target)
        demotion = self.demotion_at_startup(host)
        if target is None:
            host.log(LogLevel.INFO, "CARP state unknown; no action until it is known")
            return Plan.none()
        return demotion.then(self.converge(target, host)).build()

    def on_step_failed(self, failure, host):
        action = failure.step.action
        phase = _phase(action)
        if phase == "promotion":
            host.kv_set(PROMOTION_FAILED, failure.reason)
            message = f"promotion failed at {_describe(action)}: {failure.reason}; demoting"
            return (Plan.builder().alert(types.AlertSeverity.CRITICAL, message)
                    .then(self.demote(host)).build())
        if phase == "demotion":
            message = (
                f"demotion failed at {_describe(action)}: {failure.reason}. This host may still "
                "hold the HAST resources (services running, filesystem mounted or role primary): "
                "a human must look before the peer uses the data. Nothing more is done "
                "automatically.")
            return _alert(types.AlertSeverity.CRITICAL, message)
        if isinstance(action, types.Action_SetTimer) and action.value.name == SETTLE_TIMER:
            message = (f"{_describe(action)} failed: {failure.reason}; acting on the settled "
                       "CARP state now")
            return (Plan.builder().alert(types.AlertSeverity.WARNING, message)
                    .then(self.settle(host)).build())
        if isinstance(action, (types.Action_DemoteCarp, types.Action_LiftCarpDemotion)):
            message = (f"{_describe(action)} failed: {failure.reason}. CARP may not be where the "
                       "operator asked: check it with `havenctl status`")
            return _alert(types.AlertSeverity.CRITICAL, message)
        host.log(LogLevel.WARN, f"{_describe(action)} failed: {failure.reason}")
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
        if target != "master":
            return self.demote(host)
        reason = host.kv_get(PROMOTION_FAILED)
        if reason is not None:
            host.log(LogLevel.WARN, f"not promoting: the last promotion failed ({reason}); "
                     "waiting for the next CARP event")
            return Plan.none()
        refusal = self.maintenance_refusal(host)
        if refusal is None:
            refusal = self.sync_refusal(host)
        return self.promotion(host) if refusal is None else refusal

    def promotion(self, host):
        """The promotion plan, after lifting this host's CARP demotion if one is held."""
        return self.lift_held_demotion(host).then(self.promote(host)).build()

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

    def resource(self, name):
        return next((r for r in self.resources if r.name == name), None)

    # ------------------------------------------------------------------------------ sync

    # What is known of each resource's local copy, as `sync:<resource>` (one of SYNC_STATES)
    # and the fact behind it as `sync-fact:<resource>`. Only the primary's hastd knows whether
    # the secondary's copy is complete, so while the peer is primary this host records what
    # the peer link relays about *our* copy. No key: nothing is known against the copy.

    @staticmethod
    def recorded(resource, host):
        value = host.kv_get(f"sync:{resource}")
        if value is not None and value not in SYNC_STATES:
            raise ValueError(f"kv `sync:{resource}` holds `{value}`, which is no sync state")
        return value

    def record(self, resource, state, fact, host):
        """Record a resource's sync state and the fact behind it; nothing when unchanged."""
        if self.recorded(resource, host) == state:
            return
        host.kv_set(f"sync:{resource}", state)
        host.kv_set(f"sync-fact:{resource}", f"{fact}, recorded {utc(host.unix_ms())}")
        _log(host, LogLevel.INFO, resource, f"our copy is {state}: {fact}")

    @staticmethod
    def fact(resource, host):
        return host.kv_get(f"sync-fact:{resource}") or "no fact recorded"

    def sync_refusal(self, host, accepted=None):
        """None when promotion may go ahead; otherwise one critical alert naming every
        resource known to be incomplete. A resource already primary is never held back."""
        peer = host.peer()
        incomplete, unknown = [], False
        for resource in self.resources:
            name = resource.name
            if host.hast_status(name).role == types.HastRole.PRIMARY or accepted == name:
                continue
            state = self.recorded(name, host)
            if state == "unknown" and self.unknown_copy == "promote":
                continue
            if state is not None:
                if state != "synced":
                    incomplete.append(f"`{name}` ({state}: {self.fact(name, host)})")
            elif peer.link == types.PeerLink.NOT_CONFIGURED or peer.facts is not None:
                pass
            elif self.unknown_copy == "promote":
                _log(host, LogLevel.WARN, name, "promoting a copy nothing is known about "
                     "(unknown-copy = \"promote\")")
            else:
                unknown = True
                incomplete.append(
                    f"`{name}` (unknown: the peer link is configured but the peer was never "
                    "heard and no record survives; unknown-copy = \"refuse\")")
        if not incomplete:
            return None
        incomplete = ", ".join(incomplete)
        if self.allow_unsynchronised:
            host.log(LogLevel.WARN, f"promoting onto incomplete data of HAST resource "
                     f"{incomplete}: allow-unsynchronised-promotion is set")
            return None
        if unknown:
            host.kv_set(UNKNOWN_REFUSED, "1")
        message = (
            f"refusing to promote: the local copy of HAST resource {incomplete} is not known to "
            "be complete, and the peer may hold newer data. To promote anyway, once, after "
            "looking: `havenctl promote --accept-incomplete <resource>` (or set "
            "allow-unsynchronised-promotion = true in this policy's settings to do so always).")
        return _alert(types.AlertSeverity.CRITICAL, message)

    @staticmethod
    def peer_heard_after_unknown_refusal(host):
        if host.kv_get(UNKNOWN_REFUSED) is None or host.peer().facts is None:
            return False
        host.kv_remove(UNKNOWN_REFUSED)
        return True

    def sync_on_peer(self, event, host):
        peer = host.peer()
        peer_name = "the peer" if peer.facts is None else f"peer {peer.facts.host}"
        if isinstance(event, types.PeerEvent_HastHook):
            hook = event.value
            sync = SYNC_HOOKS.get(type(hook))
            resource = _hook_resource(hook)
            if (sync is None or self.resource(resource) is None
                    or self.locally_primary(resource, host)):
                return
            state, word = sync
            fact = f"{peer_name}'s hastd ran `{word}` as primary (relayed by the peer link)"
            self.record(resource, state, fact, host)
        elif isinstance(event, types.PeerEvent_FactsChanged):
            self.on_peer_facts(event.value, peer_name, host)
        elif isinstance(event, types.PeerEvent_Up):
            host.log(LogLevel.INFO, f"peer link up ({peer_name})")
        elif isinstance(event, types.PeerEvent_Down):
            host.log(LogLevel.WARN, f"peer link down ({peer_name}): nothing is done on that "
                     "alone; the last facts heard are kept")

    def on_peer_facts(self, facts, peer_name, host):
        """The peer's status as its primary: dirty bytes while degraded mean it wrote what we
        lack; complete with nothing dirty means our copy equals its own."""
        for status in facts.hast:
            resource = status.resource
            if (status.role != types.HastRole.PRIMARY or self.resource(resource) is None
                    or self.locally_primary(resource, host)):
                continue
            dirty = status.dirty_bytes or 0
            if status.replication == types.HastReplication.DEGRADED and dirty > 0:
                # A more specific record (an interrupted sync, a split-brain) stays.
                if self.recorded(resource, host) not in ("interrupted", "split-brain"):
                    fact = (f"{peer_name} is primary, degraded, with {dirty} dirty bytes "
                            "(relayed hastctl list)")
                    self.record(resource, "behind", fact, host)
            elif status.replication == types.HastReplication.COMPLETE and dirty == 0:
                # Polled status lags the hooks: it only settles what no hook spoke about.
                if self.recorded(resource, host) in (None, "behind", "unknown"):
                    fact = (f"{peer_name} is primary, complete, with 0 dirty bytes (relayed "
                            "hastctl list)")
                    self.record(resource, "synced", fact, host)

    def on_state_lost(self, reason, host):
        """The store was lost: what it held is unknown, which is not nothing known."""
        for resource in self.resources:
            if not self.locally_primary(resource.name, host):
                fact = f"this policy's stored state was lost ({reason})"
                self.record(resource.name, "unknown", fact, host)

    @staticmethod
    def locally_primary(resource, host):
        return host.hast_status(resource).role == types.HastRole.PRIMARY

    def sync_on_hook(self, hook, host):
        """Record what this host's hastd hook says about one of our resources. Only a
        split-brain asks for anything: an alert for a human."""
        resource = _hook_resource(hook)
        if self.resource(resource) is None:
            return Plan.none()
        kind = type(hook)
        if kind in SYNC_HOOKS:
            state, word = SYNC_HOOKS[kind]
            self.record_own_sync(resource, word, state, host)
        elif kind is types.HastHook_SplitBrain:
            self.record_split_brain(resource, host)
            return _split_brain_alert(resource)
        elif kind is types.HastHook_RoleChanged:
            self.on_role_change(hook.value, host)
        elif kind is types.HastHook_Connect:
            _log(host, LogLevel.INFO, resource, "the peer connected")
        elif kind is types.HastHook_Disconnect:
            _log(host, LogLevel.INFO, resource, "the peer went away")
        return Plan.none()

    def record_split_brain(self, resource, host):
        if self.locally_primary(resource, host):
            _log(host, LogLevel.WARN, resource, "split-brain not recorded: this host is primary, "
                 "its copy is the one in use")
            return
        self.record(resource, "split-brain", "this host's hastd ran `split-brain`", host)

    def record_own_sync(self, resource, hook, state, host):
        """Sync hooks describe the copy being written: ours only while we are secondary."""
        role = host.hast_status(resource).role
        if role == types.HastRole.SECONDARY:
            self.record(resource, state, f"this host's hastd ran `{hook}`", host)
            return
        _log(host, LogLevel.INFO, resource, f"{hook} not recorded: in role {ROLE[role]} it "
             "describes the peer's copy, not ours")

    def on_role_change(self, change, host):
        """Becoming primary makes our copy the authoritative one; init to secondary after a
        split-brain is the recovery, and a full resync follows."""
        if change.new == types.HastRole.PRIMARY:
            host.kv_remove(f"sync:{change.resource}")
            host.kv_remove(f"sync-fact:{change.resource}")
        elif (change.old == types.HastRole.INIT and change.new == types.HastRole.SECONDARY
              and self.recorded(change.resource, host) == "split-brain"):
            fact = ("recovering from a split-brain (role init to secondary): a full resync "
                    "follows")
            self.record(change.resource, "syncing", fact, host)
        else:
            _log(host, LogLevel.DEBUG, change.resource,
                 f"role changed from {ROLE[change.old]} to {ROLE[change.new]}")

    def describe_copy(self, resource, host):
        state = self.recorded(resource, host)
        return "nothing recorded" if state is None else f"{state}: {self.fact(resource, host)}"

    # ------------------------------------------------------------------------------ operator

    # A planned move must never cost data. A switchover is refused, with the reason, unless the
    # peer can take over with nothing lost; then it is the demotion and `demote-carp`. The
    # demotion is held (`carp-demoted`) until this host promotes again or maintenance is off.

    def on_operator(self, request, host):
        ask = request.ask
        host.log(LogLevel.INFO, f"operator (uid {request.uid}): `havenctl {_command(ask)}`")
        if isinstance(ask, types.OperatorAsk_Switchover):
            return self.switchover("switchover", host)
        if isinstance(ask, types.OperatorAsk_Maintenance) and ask.value:
            return self.maintenance_on(host)
        if isinstance(ask, types.OperatorAsk_Maintenance):
            host.kv_remove(DEMOTED)
            lift = Plan.builder()
            if self.vhid is not None:
                lift.lift_carp_demotion(self.vhid)
            if self.current_target(host) == "master":
                host.kv_remove(PROMOTION_FAILED)
                lift.then(self.converge("master", host))
            return lift.build()
        return self.accept_incomplete(ask.value, request.uid, host)

    def accept_incomplete(self, resource, uid, host):
        """Promote now onto a copy not known to be complete, on the operator's word, if CARP
        wants this host master and nothing else holds the promotion back. Kept for nothing."""
        command = f"promote --accept-incomplete {resource}"
        reason = self.nothing_to_accept(resource, host)
        if reason is not None:
            return _alert(types.AlertSeverity.WARNING, f"`havenctl {command}` changes nothing: "
                          f"{reason}")
        refusal = self.maintenance_refusal(host)
        if refusal is not None:
            return refusal
        host.kv_remove(PROMOTION_FAILED)
        refusal = self.sync_refusal(host, accepted=resource)
        if refusal is not None:
            return refusal
        message = (f"promoting onto the local copy of HAST resource `{resource}` "
                   f"({self.describe_copy(resource, host)}) on the operator's word: "
                   f"`havenctl {command}` by uid {uid}")
        warning = Plan.builder().alert(types.AlertSeverity.WARNING, message)
        return warning.then(self.promotion(host)).build()

    def nothing_to_accept(self, resource, host):
        if self.resource(resource) is None:
            return f"`{resource}` is not one of this policy's HAST resources"
        if self.current_target(host) != "master":
            return ("CARP does not make this host master, so no promotion waits; nothing is kept "
                    "for later")
        if self.locally_primary(resource, host):
            return f"`{resource}` is primary here already"
        return None

    def serving(self, host):
        return any(self.locally_primary(r.name, host) for r in self.resources)

    def peer_cannot_take_over(self, vhid, host):
        """Why the peer cannot take the service over with nothing lost, if it cannot."""
        peer = host.peer()
        if peer.link == types.PeerLink.NOT_CONFIGURED:
            return ("no peer link is configured ([peer] in haven.toml), so nothing tells this "
                    "host that the peer can take over")
        if peer.link == types.PeerLink.DOWN:
            return f"the peer is unreachable: its link has been down for {peer.link_for_ms // 1000} s"
        facts = peer.facts
        if facts is None:
            return "the peer has not published its facts yet"
        name = facts.host
        if facts.maintenance:
            return f"the peer ({name}) is in maintenance"
        if facts.running_plan is not None:
            return f"the peer ({name}) is running plan {facts.running_plan}"
        carp_status = next((c for c in facts.carp if c.vhid == vhid), None)
        if carp_status is None:
            return f"the peer ({name}) reports no CARP vhid {vhid}"
        if carp_status.state == types.CarpState.INIT:
            return (f"the peer's ({name}) CARP vhid {vhid} is INIT: it takes no part in "
                    "elections")
        for resource in self.resources:
            res = resource.name
            local = host.hast_status(res)
            if local.replication != types.HastReplication.COMPLETE:
                return (f"the peer's copy of `{res}` is not known to be in sync: replication is "
                        f"{REPLICATION[local.replication]}")
            if local.dirty_bytes is None:
                return (f"the peer's copy of `{res}` is not known to be in sync: hastd reports "
                        "no dirty count here")
            if local.dirty_bytes != 0:
                return (f"the peer's copy of `{res}` is behind: {local.dirty_bytes} bytes are not "
                        "replicated yet (dirty); wait for it to reach 0")
            role = next((h.role for h in facts.hast if h.resource == res), None)
            if role != types.HastRole.SECONDARY:
                role = "unknown" if role is None else ROLE[role]
                return (f"the peer's ({name}) HAST role for `{res}` is {role}, not secondary: its "
                        "copy receives nothing")
        return None

    def switchover(self, why, host):
        if self.vhid is None:
            return _alert(types.AlertSeverity.WARNING, f"{why} refused: this policy follows a "
                          "carp interface (carp-interface), which cannot be demoted; configure "
                          "its vhid instead")
        if not self.serving(host):
            return _alert(types.AlertSeverity.WARNING, f"{why}: this host does not serve (no "
                          "resource of this policy is HAST primary here); nothing to move")
        reason = self.peer_cannot_take_over(self.vhid, host)
        if reason is not None:
            return _alert(types.AlertSeverity.WARNING,
                          f"{why} refused: {reason}; nothing was changed")
        host.log(LogLevel.INFO,
                 f"{why}: handing the service and CARP vhid {self.vhid} to the peer")
        host.kv_set(DEMOTED, str(self.vhid))
        return Plan.builder().then(self.demote(host)).demote_carp(self.vhid).build()

    def maintenance_on(self, host):
        if self.vhid is None:
            return _alert(types.AlertSeverity.WARNING, "maintenance is on, but this policy "
                          "follows a carp interface (carp-interface), which cannot be demoted: it "
                          "only refuses to promote")
        if self.serving(host):
            reason = self.peer_cannot_take_over(self.vhid, host)
            if reason is not None:
                return _alert(types.AlertSeverity.CRITICAL, f"maintenance is on, but this host "
                              f"keeps serving: {reason}. The service moves as soon as the peer "
                              "can take it; `havenctl maintenance off` cancels")
            return self.switchover("maintenance on", host)
        host.kv_set(DEMOTED, str(self.vhid))
        return Plan.builder().demote_carp(self.vhid).build()

    def move_away_in_maintenance(self, host):
        if (self.vhid is None or host.maintenance() is None or not self.serving(host)
                or self.peer_cannot_take_over(self.vhid, host) is not None):
            return Plan.none()
        return self.switchover("maintenance on", host)

    def demotion_at_startup(self, host):
        """In maintenance, assert the demotion again (a reboot reset FreeBSD's advskew)."""
        if (host.maintenance() is not None and self.vhid is not None
                and not self.serving(host)):
            host.kv_set(DEMOTED, str(self.vhid))
            return Plan.builder().demote_carp(self.vhid)
        return Plan.builder()

    def lift_held_demotion(self, host):
        if self.vhid is not None and host.kv_get(DEMOTED) is not None:
            host.kv_remove(DEMOTED)
            return Plan.builder().lift_carp_demotion(self.vhid)
        return Plan.builder()

    def maintenance_refusal(self, host):
        maintenance = host.maintenance()
        if maintenance is None:
            return None
        plan = Plan.builder()
        if self.vhid is not None and host.peer().link == types.PeerLink.UP:
            host.kv_set(DEMOTED, str(self.vhid))
            plan.demote_carp(self.vhid)
            address = "handing the address back to the peer"
        else:
            address = "the peer is unreachable, so the address stays here with no service"
        message = (f"not promoting: this host is in maintenance (since "
                   f"{utc(maintenance.since_unix_ms)}, by uid {maintenance.uid}), although CARP "
                   f"made it master; {address}. `havenctl maintenance off` serves here")
        return plan.alert(types.AlertSeverity.CRITICAL, message).build()

    # ------------------------------------------------------------------------------ witness

    # The daemon guards every promotion with the witness's leader key; this covers a host that
    # already serves: the key lost (demote unless the peer vouches, or after isolated-serve-ms),
    # the peer holding the key (demote), the key free again (decide a refused promotion again).

    def on_witness(self, event, host):
        state, change = event.state, event.change
        if isinstance(change, types.WitnessChange_KeyLost):
            return self.on_key_lost(change.value, state, host)
        retry = isinstance(change, types.WitnessChange_Reachable)
        if isinstance(change, types.WitnessChange_LeaderChanged):
            leader = state.leader
            if leader is not None and not state.holding and self.serving(host):
                message = (f"{leader.host} holds the witness's leader key (fencing token "
                           f"{leader.token}) while this host serves: demoting, as {leader.host} "
                           "may promote")
                return self.witness_demotion(message, host)
            retry = leader is None
        if not retry:
            return Plan.none()
        why = "the witness's leader key may be had now; deciding the refused promotion again"
        again = self.decide_again(host.kv_get(PROMOTION_FAILED) is not None, why, host)
        return Plan.none() if again is None else again

    def on_key_lost(self, token, state, host):
        if not self.serving(host):
            return Plan.none()
        peer = self.peer_vouches(host)
        if peer is not None:
            host.log(LogLevel.WARN, f"the witness's leader key is lost (fencing token {token}), "
                     f"but {peer} is linked and serves none of our resources: going on serving "
                     "(failsafe)")
            return Plan.none()
        why = (f"the witness's leader key is lost (fencing token {token}) and the peer cannot "
               "vouch that this host alone serves")
        return self.unfenced(state, why, f"{why}: demoting before the lease can run out", host)

    def unfenced(self, state, why, demoting, host):
        if state.isolated_serve_ms > 0:
            host.log(LogLevel.WARN,
                     f"{why}: serving for isolated-serve-ms ({state.isolated_serve_ms} ms) more")
            return Plan.builder().set_timer(ISOLATED_TIMER, state.isolated_serve_ms).build()
        return self.witness_demotion(demoting, host)

    def recheck_vouching(self, host):
        state = host.witness()
        if (state is None or state.holding or not self.serving(host)
                or self.peer_vouches(host) is not None):
            return None
        why = "this host serves without the witness's leader key and its peer no longer vouches"
        return self.unfenced(state, why, f"{why}: demoting", host)

    def on_isolated_timer(self, host):
        state = host.witness()
        if (state is not None and state.holding) or not self.serving(host):
            return Plan.none()
        peer = self.peer_vouches(host)
        if peer is not None:
            host.log(LogLevel.INFO,
                     f"isolated-serve-ms is over, but {peer} vouches now: going on serving")
            return Plan.none()
        return self.witness_demotion("isolated-serve-ms is over and the witness's leader key is "
                                     "still lost: demoting", host)

    def peer_vouches(self, host):
        """The peer's name, if the link is up, its facts fresh, and it serves none of ours."""
        peer = host.peer()
        fresh = peer.facts_age_ms is not None and peer.facts_age_ms <= VOUCH_FRESH_MS
        if peer.facts is None or peer.link != types.PeerLink.UP or not fresh:
            return None
        serves = any(status.role == types.HastRole.PRIMARY
                     and self.resource(status.resource) is not None
                     for status in peer.facts.hast)
        return None if serves else peer.facts.host

    def witness_demotion(self, why, host):
        host.log(LogLevel.WARN, why)
        return (Plan.builder().alert(types.AlertSeverity.CRITICAL, why)
                .then(self.demote(host)).build())

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


REPLICATION = {types.HastReplication.COMPLETE: "complete",
               types.HastReplication.DEGRADED: "degraded",
               types.HastReplication.UNKNOWN: "unknown"}


def _alert(severity, message):
    return Plan.builder().alert(severity, message).build()


def _command(ask):
    """The havenctl command an operator request came from."""
    if isinstance(ask, types.OperatorAsk_Switchover):
        return "switchover" if ask.value is None else f"switchover --to {ask.value}"
    if isinstance(ask, types.OperatorAsk_Maintenance):
        return f"maintenance {'on' if ask.value else 'off'}"
    return f"promote --accept-incomplete {ask.value}"


def _hook_resource(hook):
    return hook.value.resource if isinstance(hook, types.HastHook_RoleChanged) else hook.value


def _log(host, level, resource, what):
    host.log(level, f"HAST resource `{resource}`: {what}")


def _split_brain_alert(resource):
    message = (
        f"HAST resource `{resource}`: split-brain (both hosts wrote while apart; hastd's worker "
        "exited). Nothing is done automatically. Decide which host has the newer data; on the "
        f"host with the OLDER data run `hastctl role init {resource}`, `hastctl create "
        f"{resource}`, `hastctl role secondary {resource}`; then on the primary watch `dirty` "
        f"fall to 0 with `hastctl list {resource}` before any switch-over.")
    return _alert(types.AlertSeverity.CRITICAL, message)


def utc(unix_ms):
    """`2026-12-04 19:20:03 UTC` from milliseconds since 1970 (proleptic Gregorian)."""
    seconds = unix_ms // 1000
    days, of_day = divmod(seconds, 86_400)
    z = days + 719_468
    era, day_of_era = divmod(z, 146_097)
    year_of_era = (day_of_era - day_of_era // 1_460 + day_of_era // 36_524
                   - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return (f"{year:04}-{month:02}-{day:02} {of_day // 3600:02}:{of_day // 60 % 60:02}:"
            f"{of_day % 60:02} UTC")


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


Handler = haven_policy.export(CarpHastSwitch)
