// carp-hast-switch-core: the seed policy's core, ported to JavaScript. A faithful SUBSET.
//
// The seed (policies/carp-hast-switch, Rust) follows CARP with HAST resources, their
// filesystems and services. This port carries its core rules over, line for line, with the same
// key-value keys, plans, timeouts and messages, so the seed's own scenario files run unchanged
// against it:
//
// - following CARP: MASTER promotes, BACKUP and INIT demote; a vhid, or a legacy carp(4)
//   interface's link (`carp-interface`);
// - the flap hold-down: act on the leading edge, then settle on a timer (`hold-down-ms`);
// - promotion and demotion plans computed from queries, so they are idempotent;
// - a failed promotion demotes with a critical alert and is not retried until the next CARP
//   event; a failed demotion alerts and stops;
// - startup converges to the current CARP state, without the hold-down.
//
// NOT ported (the Rust seed has them): the sync safety that refuses to promote onto a copy not
// known to be complete (hastd's hooks and the peer's facts), the peer link, the operator's
// requests and the witness. Their settings (`allow-unsynchronised-promotion`, `unknown-copy`)
// are accepted and have no effect, and their events are no action. This port promotes whenever
// CARP says master: do not run it on a pair whose copy may be incomplete.

import { Plan, Policy } from './haven_policy.js';

const DESIRED = 'desired';
const SETTLE_PENDING = 'settle-pending';
const LAST_ACT_MS = 'last-act-ms';
const PROMOTION_FAILED = 'promotion-failed';
const SETTLE_TIMER = 'settle';

const TIMEOUTS = {
  'worker-gone': 10000, device: 30000, fsck: 600000, mount: 60000, service: 120000, role: 30000,
};
const SETTINGS = new Set(['vhid', 'carp-interface', 'services', 'hold-down-ms', 'force-unmount',
  'allow-unsynchronised-promotion', 'unknown-copy', 'timeouts', 'resources']);

function checkName(what, name, problems) {
  if (!name || /[\s/]/.test(name)) {
    problems.push(`${what} \`${name}\` is not valid: it is empty or contains whitespace or \`/\``);
  }
}

export class CarpHastSwitchCore extends Policy {
  static info() {
    return { name: 'carp-hast-switch-core', version: '0.1.0' };
  }

  constructor(settings) {
    super(settings);
    const unknown = Object.keys(settings).filter((key) => !SETTINGS.has(key));
    if (unknown.length) throw new Error(`unknown setting(s): ${unknown.sort().join(', ')}`);
    this.vhid = settings.vhid;
    this.carpInterface = settings['carp-interface'];
    this.services = settings.services || [];
    this.holdDownMs = settings['hold-down-ms'] ?? 5000;
    this.forceUnmount = settings['force-unmount'] ?? true;
    this.timeouts = { ...TIMEOUTS, ...(settings.timeouts || {}) };
    this.resources = (settings.resources || []).map((raw) => ({
      name: raw.name,
      device: raw.device || `/dev/hast/${raw.name}`,
      mountpoint: raw.mountpoint,
      fstype: raw.fstype,
    }));
    const problems = [];
    if (this.vhid === undefined && this.carpInterface === undefined) {
      problems.push('give `vhid` or `carp-interface` (or both): there is nothing to follow');
    }
    if (this.vhid === 0) problems.push('vhid must be between 1 and 255');
    if (!this.resources.length) problems.push('resources must name at least one HAST resource');
    for (const resource of this.resources) checkName('resource name', resource.name, problems);
    for (const service of this.services) checkName('service', service, problems);
    for (const [name, value] of Object.entries(this.timeouts)) {
      if (value === 0) problems.push(`timeouts.${name} must be more than 0 ms`);
    }
    if (problems.length) throw new Error(`invalid settings: ${problems.join('; ')}`);
  }

  // ---------------------------------------------------------------------------------- events

  handle(event, host) {
    switch (event.tag) {
      case 'startup': return this.onStartup(host);
      case 'carp-changed':
      case 'carp-link': return this.onCarp(event, host);
      case 'timer-fired': return event.val === SETTLE_TIMER ? this.settle(host) : Plan.none();
      case 'step-failed': return this.onStepFailed(event.val, host);
      default: return Plan.none();
    }
  }

  onCarp(event, host) {
    const target = this.targetOf(event);
    if (target === undefined) return Plan.none();
    host.kvRemove(PROMOTION_FAILED);
    host.kvSet(DESIRED, target);
    if (host.kvGet(SETTLE_PENDING) === undefined && this.holdDownOver(host)) {
      const plan = this.converge(target, host);
      if (!plan.isNone()) this.recordAction(host);
      return plan;
    }
    host.kvSet(SETTLE_PENDING, '1');
    return Plan.builder().setTimer(SETTLE_TIMER, this.holdDownMs).build();
  }

  settle(host) {
    this.recordAction(host);
    const target = host.kvGet(DESIRED);
    return target === 'master' || target === 'backup' ? this.converge(target, host) : Plan.none();
  }

  onStartup(host) {
    host.kvRemove(PROMOTION_FAILED);
    const target = this.currentTarget(host);
    host.kvRemove(SETTLE_PENDING);
    host.kvRemove(LAST_ACT_MS);
    if (target === undefined) return Plan.none();
    host.kvSet(DESIRED, target);
    return this.converge(target, host);
  }

  onStepFailed(failure, host) {
    const action = failure.step.action;
    const phase = phaseOf(action);
    if (phase === 'promotion') {
      host.kvSet(PROMOTION_FAILED, failure.reason);
      const message = `promotion failed at ${describe(action)}: ${failure.reason}; demoting`;
      const alert = Plan.builder().alert('critical', message).build();
      return new Plan([...alert.steps, ...this.demote(host).steps]);
    }
    if (phase === 'demotion') {
      const message = `demotion failed at ${describe(action)}: ${failure.reason}. This host may `
        + 'still hold the HAST resources (services running, filesystem mounted or role primary): '
        + 'a human must look before the peer uses the data. Nothing more is done automatically.';
      return Plan.builder().alert('critical', message).build();
    }
    if (action.tag === 'set-timer' && action.val.name === SETTLE_TIMER) {
      const message = `${describe(action)} failed: ${failure.reason}; acting on the settled CARP `
        + 'state now';
      const warning = Plan.builder().alert('warning', message).build();
      return new Plan([...warning.steps, ...this.settle(host).steps]);
    }
    return Plan.none();
  }

  // ---------------------------------------------------------------------------------- CARP

  targetOf(event) {
    if (event.tag === 'carp-changed' && event.val.vhid === this.vhid) {
      return event.val.state === 'master' ? 'master' : 'backup';
    }
    if (event.tag === 'carp-link' && event.val.interface === this.carpInterface) {
      return event.val.up ? 'master' : 'backup';
    }
    return undefined;
  }

  currentTarget(host) {
    if (this.vhid === undefined) {
      const desired = host.kvGet(DESIRED);
      return desired === 'master' || desired === 'backup' ? desired : undefined;
    }
    const state = host.carpState(this.vhid);
    if (state === undefined) return undefined;
    return state === 'master' ? 'master' : 'backup';
  }

  holdDownOver(host) {
    const now = BigInt(host.nowMs());
    const last = host.kvGet(LAST_ACT_MS);
    if (last === undefined || !/^\d+$/.test(last) || BigInt(last) > now) return true;
    return now - BigInt(last) >= BigInt(this.holdDownMs);
  }

  recordAction(host) {
    host.kvRemove(SETTLE_PENDING);
    host.kvSet(LAST_ACT_MS, String(host.nowMs()));
  }

  // ---------------------------------------------------------------------------------- plans

  converge(target, host) {
    if (target === 'master') {
      return host.kvGet(PROMOTION_FAILED) !== undefined ? Plan.none() : this.promote(host);
    }
    return this.demote(host);
  }

  promote(host) {
    const t = this.timeouts;
    const plan = Plan.builder();
    for (const resource of this.resources) {
      const takesRole = host.hastStatus(resource.name).role !== 'primary';
      if (takesRole) {
        plan.waitWorkerGone(resource.name, 'secondary', t['worker-gone']);
        plan.hastRole(resource.name, 'primary', t.role);
      }
      if (takesRole || !host.deviceExists(resource.device)) plan.waitDevice(resource.device, t.device);
      if (!holdsMount(resource, host)) {
        plan.fsck(resource.device, resource.fstype, true, t.fsck);
        plan.mount(resource.device, resource.mountpoint, resource.fstype, t.mount);
      }
    }
    for (const service of this.services) {
      if (!host.serviceRunning(service)) plan.startService(service, t.service);
    }
    return plan.build();
  }

  demote(host) {
    const t = this.timeouts;
    const plan = Plan.builder();
    for (const service of [...this.services].reverse()) {
      if (host.serviceRunning(service)) plan.stopService(service, t.service);
    }
    for (const resource of this.resources) {
      if (holdsMount(resource, host)) plan.unmount(resource.mountpoint, this.forceUnmount, t.mount);
      if (host.hastStatus(resource.name).role !== 'secondary') {
        plan.hastRole(resource.name, 'secondary', t.role);
      }
    }
    return plan.build();
  }
}

function holdsMount(resource, host) {
  const mount = host.mounted(resource.mountpoint);
  if (mount === undefined) return false;
  if (mount.device === resource.device) return true;
  throw new Error(`${resource.mountpoint} has ${mount.device} mounted, not ${resource.device} of `
    + `HAST resource \`${resource.name}\`; unmount it or fix the settings`);
}

function phaseOf(action) {
  switch (action.tag) {
    case 'set-hast-role':
      return { primary: 'promotion', secondary: 'demotion' }[action.val.role] || 'other';
    case 'wait-for-device':
    case 'wait-hast-worker-gone':
    case 'fsck':
    case 'mount': return 'promotion';
    case 'service': return action.val.op === 'stop' ? 'demotion' : 'promotion';
    case 'unmount': return 'demotion';
    default: return 'other';
  }
}

function describe(action) {
  const v = action.val;
  switch (action.tag) {
    case 'set-hast-role': return `\`hastctl role ${v.role} ${v.resource}\``;
    case 'wait-for-device': return `waiting for ${v} to appear`;
    case 'wait-hast-worker-gone': return `waiting for the ${v.role} worker of \`${v.resource}\` to exit`;
    case 'fsck': return `\`fsck -t ${v.fstype} ${v.device}\``;
    case 'mount': return `\`mount -t ${v.fstype} ${v.device} ${v.mountpoint}\``;
    case 'unmount': return `\`umount ${v.force ? '-f ' : ''}${v.mountpoint}\``;
    case 'service': {
      const op = { start: 'onestart', stop: 'onestop', restart: 'onerestart' }[v.op];
      return `\`service ${v.name} ${op}\``;
    }
    case 'set-timer': return `arming timer \`${v.name}\``;
    case 'cancel-timer': return `cancelling timer \`${v}\``;
    case 'demote-carp': return `demoting CARP vhid ${v}`;
    case 'lift-carp-demotion': return `lifting the demotion of CARP vhid ${v}`;
    default: return 'an alert';
  }
}
