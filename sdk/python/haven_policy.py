"""haven_policy: what haven-sdk is to a Rust policy, for a Python one.

A Haven policy only decides: it gets an event, may ask read-only questions about the machine,
and answers with a plan. This module gives a Python policy the same shape as a Rust one:

- ``Policy``: subclass it, give ``info()`` and ``handle(event, host)``; ``__init__`` gets the
  ``[policy.settings]`` table as a dict and raises ``ValueError`` to refuse it.
- ``export(MyPolicy)``: the component's ``Handler``, what componentize-py builds from. It
  turns an exception into the call's error, with the exception's type and message, so the
  operator reads ``returned an error: KeyError: 'vhid'`` instead of a bare trap.
- ``Host``: the questions, as methods. ``WasmHost`` asks havend (inside the component);
  ``ScriptedHost`` answers from what a test scripted, and refuses anything else, as havend
  refuses a query outside the policy's grants.
- ``Plan``: ``Plan.none()`` or ``Plan.builder().start_service("nginx").build()``, the same
  steps and defaults as the Rust builder.
- ``events``: the events a test hands to ``handle``.

The types (``types.CarpState``, ``types.Event_CarpChanged``, ...) are the bindings
componentize-py generates from Haven's WIT contract (``componentize-py -d wit -w policy
bindings .``); they are plain dataclasses, so unit tests run on CPython with no WebAssembly.
"""

import json
from typing import Dict, List, Optional, Tuple

# Every import happens here, when the module loads: componentize-py runs that at build time
# and snapshots it, and the built component (with --stub-wasi) has no files to import from.
from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import (carp, clock, hast, kv, log, operator, peer, services, storage,
                               types, witness)

__all__ = ["Policy", "export", "Host", "WasmHost", "ScriptedHost", "QueryRefused", "Plan",
           "PlanBuilder", "events", "types"]


class QueryRefused(Exception):
    """A question havend did not answer: outside the grants, or about something unknown."""


class Host:
    """The read-only questions a policy may ask (the contract's query interfaces)."""

    def carp_state(self, vhid: int) -> Optional[types.CarpState]:
        raise NotImplementedError

    def hast_status(self, resource: str) -> types.HastStatus:
        raise NotImplementedError

    def hast_worker_running(self, resource: str, role: types.HastRole) -> bool:
        raise NotImplementedError

    def mounted(self, mountpoint: str) -> Optional[types.MountStatus]:
        raise NotImplementedError

    def device_exists(self, path: str) -> bool:
        raise NotImplementedError

    def service_running(self, name: str) -> bool:
        raise NotImplementedError

    def now_ms(self) -> int:
        raise NotImplementedError

    def unix_ms(self) -> int:
        """Wall-clock milliseconds since 1970, to stamp records a human reads."""
        raise NotImplementedError

    def peer(self) -> types.PeerState:
        """The peer as this host knows it: the link, and the peer's last facts."""
        raise NotImplementedError

    def maintenance(self) -> Optional[types.MaintenanceState]:
        """Whether this host is in maintenance (``havenctl maintenance on``), since when."""
        raise NotImplementedError

    def witness(self) -> Optional[types.WitnessState]:
        """The witness (etcd) as this host sees it; None when none is configured."""
        raise NotImplementedError

    def kv_get(self, key: str) -> Optional[str]:
        raise NotImplementedError

    def kv_set(self, key: str, value: str) -> None:
        raise NotImplementedError

    def kv_remove(self, key: str) -> None:
        raise NotImplementedError

    def log(self, level: types.LogLevel, message: str) -> None:
        raise NotImplementedError


def _answer(call):
    """Call a query import; its error becomes ``QueryRefused`` with havend's reason."""
    try:
        return call()
    except Err as error:
        raise QueryRefused(getattr(error.value, "value", str(error.value))) from None


class WasmHost(Host):
    """The host inside the component: every question goes to havend."""

    def carp_state(self, vhid):
        return carp.state(vhid)

    def hast_status(self, resource):
        return _answer(lambda: hast.status(resource))

    def hast_worker_running(self, resource, role):
        return _answer(lambda: hast.worker_running(resource, role))

    def mounted(self, mountpoint):
        return _answer(lambda: storage.mounted(mountpoint))

    def device_exists(self, path):
        return _answer(lambda: storage.device_exists(path))

    def service_running(self, name):
        return _answer(lambda: services.is_running(name))

    def now_ms(self):
        return clock.now_ms()

    def unix_ms(self):
        return clock.unix_ms()

    def peer(self):
        return peer.state()

    def maintenance(self):
        return operator.maintenance()

    def witness(self):
        return witness.state()

    def kv_get(self, key):
        return kv.get(key)

    def kv_set(self, key, value):
        return _answer(lambda: kv.set(key, value))

    def kv_remove(self, key):
        kv.remove(key)

    def log(self, level, message):
        log.log(level, message)


class ScriptedHost(Host):
    """A host for unit tests: it answers what it was told, and refuses every other question
    with ``QueryRefused``, as havend refuses one outside the grants. Build it by chaining:
    ``ScriptedHost().service("nginx", False).carp(1, types.CarpState.MASTER)``."""

    def __init__(self):
        self._carp: Dict[int, types.CarpState] = {}
        self._hast: Dict[str, types.HastStatus] = {}
        self._workers: Dict[Tuple[str, types.HastRole], bool] = {}
        self._mounts: Dict[str, Optional[types.MountStatus]] = {}
        self._devices: Dict[str, bool] = {}
        self._services: Dict[str, bool] = {}
        self._now_ms = 0
        self._unix_ms = 0
        # As havend answers with no [peer] configured.
        self._peer = types.PeerState(types.PeerLink.NOT_CONFIGURED, 0, None, None)
        self._maintenance: Optional[types.MaintenanceState] = None
        self._witness: Optional[types.WitnessState] = None
        self.kv: Dict[str, str] = {}
        self.logs: List[Tuple[types.LogLevel, str]] = []

    def carp(self, vhid, state):
        self._carp[vhid] = state
        return self

    def hast(self, resource, role, replication=types.HastReplication.COMPLETE, dirty_bytes=None):
        self._hast[resource] = types.HastStatus(resource, role, replication, dirty_bytes)
        return self

    def worker(self, resource, role, running):
        self._workers[(resource, role)] = running
        return self

    def mount(self, mountpoint, device=None, fstype="ufs"):
        """``device=None`` scripts the mountpoint as not mounted."""
        self._mounts[mountpoint] = (types.MountStatus(device, mountpoint, fstype)
                                    if device else None)
        return self

    def device(self, path, exists):
        self._devices[path] = exists
        return self

    def service(self, name, running):
        self._services[name] = running
        return self

    def now(self, now_ms):
        self._now_ms = now_ms
        return self

    def unix(self, unix_ms):
        self._unix_ms = unix_ms
        return self

    def peer_link(self, link, for_ms=0):
        """The peer link in ``link`` for ``for_ms`` milliseconds (the facts are kept)."""
        self._peer = types.PeerState(link, for_ms, self._peer.facts, self._peer.facts_age_ms)
        return self

    def in_maintenance(self, since_unix_ms, uid):
        """This host in maintenance since ``since_unix_ms``, turned on by ``uid``."""
        self._maintenance = types.MaintenanceState(since_unix_ms, uid)
        return self

    def witness_state(self, state):
        """The witness as this host sees it (``types.WitnessState``)."""
        self._witness = state
        return self

    def peer_facts(self, facts, age_ms=0):
        """The peer's last facts (``types.PeerFacts``), ``age_ms`` old."""
        self._peer = types.PeerState(self._peer.link, self._peer.link_for_ms, facts, age_ms)
        return self

    @staticmethod
    def _scripted(table, key, what):
        if key not in table:
            raise QueryRefused(f"{what} {key!r} was not scripted")
        return table[key]

    def carp_state(self, vhid):
        return self._carp.get(vhid)

    def hast_status(self, resource):
        return self._scripted(self._hast, resource, "HAST resource")

    def hast_worker_running(self, resource, role):
        return self._scripted(self._workers, (resource, role), "HAST worker")

    def mounted(self, mountpoint):
        return self._scripted(self._mounts, mountpoint, "mountpoint")

    def device_exists(self, path):
        return self._scripted(self._devices, path, "device")

    def service_running(self, name):
        return self._scripted(self._services, name, "service")

    def now_ms(self):
        return self._now_ms

    def unix_ms(self):
        return self._unix_ms

    def peer(self):
        return self._peer

    def maintenance(self):
        return self._maintenance

    def witness(self):
        return self._witness

    def kv_get(self, key):
        return self.kv.get(key)

    def kv_set(self, key, value):
        self.kv[key] = value

    def kv_remove(self, key):
        self.kv.pop(key, None)

    def log(self, level, message):
        self.logs.append((level, message))


class Plan:
    """The steps to carry out, in order; an empty plan means no action."""

    def __init__(self, steps=None):
        self.steps: List[types.Step] = list(steps or [])

    @staticmethod
    def none() -> "Plan":
        return Plan()

    @staticmethod
    def builder() -> "PlanBuilder":
        return PlanBuilder()

    def is_none(self) -> bool:
        return not self.steps

    def __eq__(self, other):
        return isinstance(other, Plan) and self.steps == other.steps

    def __repr__(self):
        return f"Plan({self.steps!r})"


class PlanBuilder:
    """Builds a plan step by step, with the same default timeouts as haven-sdk's builder
    (the daemon's own default when ``None``)."""

    def __init__(self):
        self._steps: List[types.Step] = []

    def _add(self, action, timeout_ms=None):
        self._steps.append(types.Step(action, timeout_ms))
        return self

    def hast_role(self, resource, role, timeout_ms=None):
        return self._add(types.Action_SetHastRole(types.SetHastRole(resource, role)), timeout_ms)

    def wait_device(self, path, timeout_ms=None):
        return self._add(types.Action_WaitForDevice(path), timeout_ms)

    def wait_worker_gone(self, resource, role, timeout_ms=None):
        return self._add(types.Action_WaitHastWorkerGone(types.HastWorker(resource, role)),
                         timeout_ms)

    def fsck(self, device, fstype, preen=True, timeout_ms=None):
        return self._add(types.Action_Fsck(types.FsckRequest(device, fstype, preen)), timeout_ms)

    def mount(self, device, mountpoint, fstype, timeout_ms=None):
        return self._add(types.Action_Mount(types.MountRequest(device, mountpoint, fstype)),
                         timeout_ms)

    def unmount(self, mountpoint, force=False, timeout_ms=None):
        return self._add(types.Action_Unmount(types.UnmountRequest(mountpoint, force)),
                         timeout_ms)

    def start_service(self, name, timeout_ms=None):
        return self._add(types.Action_Service(types.ServiceRequest(name, types.ServiceOp.START)),
                         timeout_ms)

    def stop_service(self, name, timeout_ms=None):
        return self._add(types.Action_Service(types.ServiceRequest(name, types.ServiceOp.STOP)),
                         timeout_ms)

    def set_timer(self, name, after_ms):
        return self._add(types.Action_SetTimer(types.TimerRequest(name, after_ms)))

    def cancel_timer(self, name):
        return self._add(types.Action_CancelTimer(name))

    def alert(self, severity, message):
        return self._add(types.Action_Alert(types.Alert(severity, message)))

    def demote_carp(self, vhid):
        return self._add(types.Action_DemoteCarp(vhid))

    def lift_carp_demotion(self, vhid):
        return self._add(types.Action_LiftCarpDemotion(vhid))

    def then(self, plan):
        """Another plan's steps after these."""
        self._steps.extend(plan.steps)
        return self

    def build(self) -> Plan:
        return Plan(self._steps)


class Policy:
    """Subclass it: ``info()`` names the policy, ``__init__(settings)`` takes the settings
    dict (raise ``ValueError`` to refuse them), ``handle(event, host)`` returns a ``Plan``."""

    @staticmethod
    def info() -> types.PolicyInfo:
        raise NotImplementedError

    def __init__(self, settings: dict):
        self.settings = settings

    def handle(self, event: types.Event, host: Host) -> Plan:
        raise NotImplementedError


class events:
    """Events for unit tests, as havend hands them over."""

    @staticmethod
    def carp(vhid, interface, state, previous=None):
        return types.Event_CarpChanged(types.CarpChange(vhid, interface, state, previous))

    @staticmethod
    def timer(name):
        return types.Event_TimerFired(name)

    @staticmethod
    def hast_status(resource, role, replication=types.HastReplication.COMPLETE, dirty_bytes=None):
        return types.Event_HastStatusChanged(
            types.HastStatus(resource, role, replication, dirty_bytes))


def _describe_error(error: BaseException) -> str:
    """An exception as the operator reads it: type, message, and where the policy raised it."""
    where = ""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is not None:
        # Inside the component files live under a folder of componentize-py's (/0/app.py):
        # the file's own name is what the author knows.
        file = trace.tb_frame.f_code.co_filename.rsplit("/", 1)[-1]
        where = f" (at {file}:{trace.tb_lineno})"
    return f"{type(error).__name__}: {error}{where}"


def export(policy_class):
    """The component's ``Handler`` for ``policy_class``: in the policy's module, write
    ``Handler = haven_policy.export(MyPolicy)``, and componentize-py builds from it."""
    state = {"settings": None}

    def build(settings_json):
        try:
            settings = json.loads(settings_json) if settings_json else {}
            return policy_class(settings)
        except Exception as error:  # a refusal of the settings, in the operator's words
            raise Err(f"settings: {_describe_error(error)}") from None

    class Handler(exports.Handler):
        def describe(self):
            return policy_class.info()

        def init(self, settings):
            build(settings)
            state["settings"] = settings

        def handle(self, event):
            policy = build(state["settings"])
            try:
                plan = policy.handle(event, WasmHost())
            except Exception as error:
                raise Err(_describe_error(error)) from None
            if not isinstance(plan, Plan):
                raise Err(f"handle returned {type(plan).__name__}, not a Plan")
            return types.Plan(plan.steps)

    return Handler
