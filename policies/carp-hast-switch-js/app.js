// carp-hast-switch, ported to JavaScript: the seed policy, rule for rule.
//
// The seed (policies/carp-hast-switch, Rust) follows CARP with HAST resources, their
// filesystems and services. This port carries every rule over, with the same key-value keys,
// plans, timeouts and messages, so the seed's own scenario files run unchanged against it (all
// 17 pass). The rules, and how each is ported, are listed in the Python port
// (../carp-hast-switch-py/app.py); the two ports are kept the same, section by section.

import { Plan, Policy } from './haven_policy.js';

const DESIRED = 'desired';
const SETTLE_PENDING = 'settle-pending';
const LAST_ACT_MS = 'last-act-ms';
const PROMOTION_FAILED = 'promotion-failed';
const SETTLE_TIMER = 'settle';
const UNKNOWN_REFUSED = 'sync-waiting-for-peer';
const DEMOTED = 'carp-demoted';
const ISOLATED_TIMER = 'witness-isolated';
const VOUCH_FRESH_MS = 2000n;
const SYNC_STATES = ['syncing', 'synced', 'interrupted', 'split-brain', 'behind', 'unknown'];
// The sync hooks: the state each records, and the word hastd's `exec` hook gets for it.
const SYNC_HOOKS = {
  'sync-start': ['syncing', 'syncstart'],
  'sync-done': ['synced', 'syncdone'],
  'sync-interrupted': ['interrupted', 'syncintr'],
};

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

export class CarpHastSwitch extends Policy {
  static info() {
    return { name: 'carp-hast-switch-js', version: '0.1.0' };
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
    this.allowUnsynchronised = Boolean(settings['allow-unsynchronised-promotion']);
    this.unknownCopy = settings['unknown-copy'] ?? 'refuse';
    if (this.unknownCopy !== 'refuse' && this.unknownCopy !== 'promote') {
      throw new Error(`unknown-copy must be "refuse" or "promote", not ${JSON.stringify(this.unknownCopy)}`);
    }
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
      case 'startup': return this.onStartup(event.val, host);
      case 'carp-changed':
      case 'carp-link': return this.onCarp(event, host);
      case 'hast-hook': return this.onHook(event.val, host);
      case 'timer-fired':
        if (event.val === SETTLE_TIMER) return this.settle(host);
        if (event.val === ISOLATED_TIMER) return this.onIsolatedTimer(host);
        host.log('debug', `ignoring unknown timer \`${event.val}\``);
        return Plan.none();
      case 'step-failed': return this.onStepFailed(event.val, host);
      case 'peer': return this.onPeer(event.val, host);
      case 'operator': return this.onOperator(event.val, host);
      case 'witness': return this.onWitness(event.val, host);
      default: return Plan.none();
    }
  }

  // A hastd hook: the sync tracking records it. A `disconnect` of one of our resources also
  // retries a promotion that failed, when CARP still wants this host master.
  onHook(hook, host) {
    const plan = this.syncOnHook(hook, host);
    if (hook.tag !== 'disconnect') return plan;
    const resource = hook.val;
    const refused = plan.isNone() && this.resource(resource) !== undefined
      && host.kvGet(PROMOTION_FAILED) !== undefined;
    const why = `HAST resource \`${resource}\`: the peer went away while CARP wants this host `
      + 'master after a failed promotion; trying again';
    return this.decideAgain(refused, why, host) ?? plan;
  }

  // A refused or failed promotion, decided again when CARP still wants this host master and no
  // settle timer is pending. Undefined: not now.
  decideAgain(refused, why, host) {
    const again = refused && host.kvGet(SETTLE_PENDING) === undefined
      && this.currentTarget(host) === 'master';
    if (!again) return undefined;
    host.log('info', why);
    host.kvRemove(PROMOTION_FAILED);
    return this.converge('master', host);
  }

  // The peer link brought news: record what it says about our copy, and try again a promotion
  // refused because nothing was known, once the peer is heard.
  onPeer(event, host) {
    this.syncOnPeer(event, host);
    if (event.tag === 'down' || event.tag === 'facts-changed') {
      const plan = this.recheckVouching(host);
      if (plan !== undefined) return plan;
    }
    if (event.tag === 'facts-changed') {
      const plan = this.moveAwayInMaintenance(host);
      if (!plan.isNone()) return plan;
    }
    const refused = event.tag === 'facts-changed' && peerHeardAfterUnknownRefusal(host);
    const why = 'the peer is heard now; deciding the refused promotion again';
    return this.decideAgain(refused, why, host) ?? Plan.none();
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

  onStartup(state, host) {
    if (state.stateLost !== undefined) this.onStateLost(state.stateLost.reason, host);
    if (state.interrupted !== undefined) {
      const step = describe(state.interrupted.step.action);
      host.log('info', `${step} was interrupted; converging from the current state`);
    }
    host.kvRemove(PROMOTION_FAILED);
    const target = this.currentTarget(host);
    host.kvRemove(SETTLE_PENDING);
    host.kvRemove(LAST_ACT_MS);
    if (target !== undefined) host.kvSet(DESIRED, target);
    const demotion = this.demotionAtStartup(host);
    if (target === undefined) {
      host.log('info', 'CARP state unknown; no action until it is known');
      return Plan.none();
    }
    return demotion.then(this.converge(target, host)).build();
  }

  onStepFailed(failure, host) {
    const action = failure.step.action;
    const phase = phaseOf(action);
    if (phase === 'promotion') {
      host.kvSet(PROMOTION_FAILED, failure.reason);
      const message = `promotion failed at ${describe(action)}: ${failure.reason}; demoting`;
      return Plan.builder().alert('critical', message).then(this.demote(host)).build();
    }
    if (phase === 'demotion') {
      const message = `demotion failed at ${describe(action)}: ${failure.reason}. This host may `
        + 'still hold the HAST resources (services running, filesystem mounted or role primary): '
        + 'a human must look before the peer uses the data. Nothing more is done automatically.';
      return alert('critical', message);
    }
    if (action.tag === 'set-timer' && action.val.name === SETTLE_TIMER) {
      const message = `${describe(action)} failed: ${failure.reason}; acting on the settled CARP `
        + 'state now';
      return Plan.builder().alert('warning', message).then(this.settle(host)).build();
    }
    if (action.tag === 'demote-carp' || action.tag === 'lift-carp-demotion') {
      return alert('critical', `${describe(action)} failed: ${failure.reason}. CARP may not be `
        + 'where the operator asked: check it with `havenctl status`');
    }
    host.log('warn', `${describe(action)} failed: ${failure.reason}`);
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
    if (target !== 'master') return this.demote(host);
    const reason = host.kvGet(PROMOTION_FAILED);
    if (reason !== undefined) {
      host.log('warn', `not promoting: the last promotion failed (${reason}); waiting for the `
        + 'next CARP event');
      return Plan.none();
    }
    return this.maintenanceRefusal(host) ?? this.syncRefusal(host) ?? this.promotion(host);
  }

  // The promotion plan, after lifting this host's CARP demotion if one is held.
  promotion(host) {
    return this.liftHeldDemotion(host).then(this.promote(host)).build();
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

  resource(name) {
    return this.resources.find((resource) => resource.name === name);
  }

  // ---------------------------------------------------------------------------------- sync
  //
  // What is known of each resource's local copy, as `sync:<resource>` (one of SYNC_STATES) and
  // the fact behind it as `sync-fact:<resource>`. Only the primary's hastd knows whether the
  // secondary's copy is complete, so while the peer is primary this host records what the peer
  // link relays about *our* copy. No key: nothing is known against the copy.

  // Record a resource's sync state and the fact behind it; nothing when unchanged.
  record(resource, state, fact, host) {
    if (recorded(resource, host) === state) return;
    host.kvSet(`sync:${resource}`, state);
    host.kvSet(`sync-fact:${resource}`, `${fact}, recorded ${utc(host.unixMs())}`);
    logAbout(host, 'info', resource, `our copy is ${state}: ${fact}`);
  }

  // Undefined when promotion may go ahead; otherwise one critical alert naming every resource
  // known to be incomplete. A resource already primary is never held back.
  syncRefusal(host, accepted = undefined) {
    const peer = host.peer();
    const incomplete = [];
    let unknown = false;
    for (const { name } of this.resources) {
      if (host.hastStatus(name).role === 'primary' || accepted === name) continue;
      const state = recorded(name, host);
      if (state === 'unknown' && this.unknownCopy === 'promote') continue;
      if (state !== undefined) {
        if (state !== 'synced') incomplete.push(`\`${name}\` (${state}: ${factOf(name, host)})`);
      } else if (peer.link === 'not-configured' || peer.facts !== undefined) {
        // Nothing is known against it.
      } else if (this.unknownCopy === 'promote') {
        logAbout(host, 'warn', name,
          'promoting a copy nothing is known about (unknown-copy = "promote")');
      } else {
        unknown = true;
        incomplete.push(`\`${name}\` (unknown: the peer link is configured but the peer was `
          + 'never heard and no record survives; unknown-copy = "refuse")');
      }
    }
    if (!incomplete.length) return undefined;
    const which = incomplete.join(', ');
    if (this.allowUnsynchronised) {
      host.log('warn', `promoting onto incomplete data of HAST resource ${which}: `
        + 'allow-unsynchronised-promotion is set');
      return undefined;
    }
    if (unknown) host.kvSet(UNKNOWN_REFUSED, '1');
    const message = `refusing to promote: the local copy of HAST resource ${which} is not known `
      + 'to be complete, and the peer may hold newer data. To promote anyway, once, after '
      + 'looking: `havenctl promote --accept-incomplete <resource>` (or set '
      + 'allow-unsynchronised-promotion = true in this policy\'s settings to do so always).';
    return alert('critical', message);
  }

  describeCopy(resource, host) {
    const state = recorded(resource, host);
    return state === undefined ? 'nothing recorded' : `${state}: ${factOf(resource, host)}`;
  }

  // ---------------------------------------------------------------------------------- operator
  //
  // A planned move must never cost data. A switchover is refused, with the reason, unless the
  // peer can take over with nothing lost; then it is the demotion and `demote-carp`. The
  // demotion is held (`carp-demoted`) until this host promotes again or maintenance is off.

  onOperator(request, host) {
    const { ask } = request;
    host.log('info', `operator (uid ${request.uid}): \`havenctl ${command(ask)}\``);
    switch (ask.tag) {
      case 'switchover': return this.switchover('switchover', host);
      case 'maintenance': {
        if (ask.val) return this.maintenanceOn(host);
        host.kvRemove(DEMOTED);
        const lift = Plan.builder();
        if (this.vhid !== undefined) lift.liftCarpDemotion(this.vhid);
        if (this.currentTarget(host) === 'master') {
          host.kvRemove(PROMOTION_FAILED);
          lift.then(this.converge('master', host));
        }
        return lift.build();
      }
      default: return this.acceptIncomplete(ask.val, request.uid, host);
    }
  }

  // Promote now onto a copy not known to be complete, on the operator's word, if CARP wants
  // this host master and nothing else holds the promotion back. Kept for nothing.
  acceptIncomplete(resource, uid, host) {
    const asked = `promote --accept-incomplete ${resource}`;
    const reason = this.nothingToAccept(resource, host);
    if (reason !== undefined) return alert('warning', `\`havenctl ${asked}\` changes nothing: ${reason}`);
    const maintenance = this.maintenanceRefusal(host);
    if (maintenance !== undefined) return maintenance;
    host.kvRemove(PROMOTION_FAILED);
    const refusal = this.syncRefusal(host, resource);
    if (refusal !== undefined) return refusal;
    const message = `promoting onto the local copy of HAST resource \`${resource}\` `
      + `(${this.describeCopy(resource, host)}) on the operator's word: \`havenctl ${asked}\` by `
      + `uid ${uid}`;
    return Plan.builder().alert('warning', message).then(this.promotion(host)).build();
  }

  nothingToAccept(resource, host) {
    if (this.resource(resource) === undefined) {
      return `\`${resource}\` is not one of this policy's HAST resources`;
    }
    if (this.currentTarget(host) !== 'master') {
      return 'CARP does not make this host master, so no promotion waits; nothing is kept for '
        + 'later';
    }
    if (locallyPrimary(resource, host)) return `\`${resource}\` is primary here already`;
    return undefined;
  }

  serving(host) {
    return this.resources.some(({ name }) => locallyPrimary(name, host));
  }

  // Why the peer cannot take the service over with nothing lost, if it cannot.
  peerCannotTakeOver(vhid, host) {
    const peer = host.peer();
    if (peer.link === 'not-configured') {
      return 'no peer link is configured ([peer] in haven.toml), so nothing tells this host that '
        + 'the peer can take over';
    }
    if (peer.link === 'down') {
      return `the peer is unreachable: its link has been down for ${BigInt(peer.linkForMs) / 1000n} s`;
    }
    const { facts } = peer;
    if (facts === undefined) return 'the peer has not published its facts yet';
    const name = facts.host;
    if (facts.maintenance) return `the peer (${name}) is in maintenance`;
    if (facts.runningPlan !== undefined) return `the peer (${name}) is running plan ${facts.runningPlan}`;
    const carp = facts.carp.find((status) => status.vhid === vhid);
    if (carp === undefined) return `the peer (${name}) reports no CARP vhid ${vhid}`;
    if (carp.state === 'init') {
      return `the peer's (${name}) CARP vhid ${vhid} is INIT: it takes no part in elections`;
    }
    for (const { name: res } of this.resources) {
      const local = host.hastStatus(res);
      if (local.replication !== 'complete') {
        return `the peer's copy of \`${res}\` is not known to be in sync: replication is `
          + `${local.replication}`;
      }
      if (local.dirtyBytes === undefined) {
        return `the peer's copy of \`${res}\` is not known to be in sync: hastd reports no dirty `
          + 'count here';
      }
      if (BigInt(local.dirtyBytes) !== 0n) {
        return `the peer's copy of \`${res}\` is behind: ${local.dirtyBytes} bytes are not `
          + 'replicated yet (dirty); wait for it to reach 0';
      }
      const role = facts.hast.find((status) => status.resource === res)?.role;
      if (role !== 'secondary') {
        return `the peer's (${name}) HAST role for \`${res}\` is ${role ?? 'unknown'}, not `
          + 'secondary: its copy receives nothing';
      }
    }
    return undefined;
  }

  switchover(why, host) {
    if (this.vhid === undefined) {
      return alert('warning', `${why} refused: this policy follows a carp interface `
        + '(carp-interface), which cannot be demoted; configure its vhid instead');
    }
    if (!this.serving(host)) {
      return alert('warning', `${why}: this host does not serve (no resource of this policy is `
        + 'HAST primary here); nothing to move');
    }
    const reason = this.peerCannotTakeOver(this.vhid, host);
    if (reason !== undefined) return alert('warning', `${why} refused: ${reason}; nothing was changed`);
    host.log('info', `${why}: handing the service and CARP vhid ${this.vhid} to the peer`);
    host.kvSet(DEMOTED, String(this.vhid));
    return Plan.builder().then(this.demote(host)).demoteCarp(this.vhid).build();
  }

  maintenanceOn(host) {
    if (this.vhid === undefined) {
      return alert('warning', 'maintenance is on, but this policy follows a carp interface '
        + '(carp-interface), which cannot be demoted: it only refuses to promote');
    }
    if (this.serving(host)) {
      const reason = this.peerCannotTakeOver(this.vhid, host);
      if (reason !== undefined) {
        return alert('critical', `maintenance is on, but this host keeps serving: ${reason}. The `
          + 'service moves as soon as the peer can take it; `havenctl maintenance off` cancels');
      }
      return this.switchover('maintenance on', host);
    }
    host.kvSet(DEMOTED, String(this.vhid));
    return Plan.builder().demoteCarp(this.vhid).build();
  }

  moveAwayInMaintenance(host) {
    if (this.vhid === undefined || host.maintenance() === undefined || !this.serving(host)
      || this.peerCannotTakeOver(this.vhid, host) !== undefined) return Plan.none();
    return this.switchover('maintenance on', host);
  }

  // In maintenance, assert the demotion again (a reboot reset FreeBSD's advskew).
  demotionAtStartup(host) {
    if (host.maintenance() !== undefined && this.vhid !== undefined && !this.serving(host)) {
      host.kvSet(DEMOTED, String(this.vhid));
      return Plan.builder().demoteCarp(this.vhid);
    }
    return Plan.builder();
  }

  liftHeldDemotion(host) {
    if (this.vhid !== undefined && host.kvGet(DEMOTED) !== undefined) {
      host.kvRemove(DEMOTED);
      return Plan.builder().liftCarpDemotion(this.vhid);
    }
    return Plan.builder();
  }

  maintenanceRefusal(host) {
    const maintenance = host.maintenance();
    if (maintenance === undefined) return undefined;
    const plan = Plan.builder();
    let address = 'the peer is unreachable, so the address stays here with no service';
    if (this.vhid !== undefined && host.peer().link === 'up') {
      host.kvSet(DEMOTED, String(this.vhid));
      plan.demoteCarp(this.vhid);
      address = 'handing the address back to the peer';
    }
    const message = `not promoting: this host is in maintenance (since `
      + `${utc(maintenance.sinceUnixMs)}, by uid ${maintenance.uid}), although CARP made it `
      + `master; ${address}. \`havenctl maintenance off\` serves here`;
    return plan.alert('critical', message).build();
  }

  // ---------------------------------------------------------------------------------- witness
  //
  // The daemon guards every promotion with the witness's leader key; this covers a host that
  // already serves: the key lost (demote unless the peer vouches, or after isolated-serve-ms),
  // the peer holding the key (demote), the key free again (decide a refused promotion again).

  onWitness(event, host) {
    const { state, change } = event;
    if (change.tag === 'key-lost') return this.onKeyLost(change.val, state, host);
    let retry = change.tag === 'reachable';
    if (change.tag === 'leader-changed') {
      const { leader } = state;
      if (leader !== undefined && !state.holding && this.serving(host)) {
        return this.witnessDemotion(`${leader.host} holds the witness's leader key (fencing token `
          + `${leader.token}) while this host serves: demoting, as ${leader.host} may promote`, host);
      }
      retry = leader === undefined;
    }
    if (!retry) return Plan.none();
    const why = "the witness's leader key may be had now; deciding the refused promotion again";
    return this.decideAgain(host.kvGet(PROMOTION_FAILED) !== undefined, why, host) ?? Plan.none();
  }

  onKeyLost(token, state, host) {
    if (!this.serving(host)) return Plan.none();
    const peer = this.peerVouches(host);
    if (peer !== undefined) {
      host.log('warn', `the witness's leader key is lost (fencing token ${token}), but ${peer} is `
        + 'linked and serves none of our resources: going on serving (failsafe)');
      return Plan.none();
    }
    const why = `the witness's leader key is lost (fencing token ${token}) and the peer cannot `
      + 'vouch that this host alone serves';
    return this.unfenced(state, why, `${why}: demoting before the lease can run out`, host);
  }

  unfenced(state, why, demoting, host) {
    if (state.isolatedServeMs > 0) {
      host.log('warn', `${why}: serving for isolated-serve-ms (${state.isolatedServeMs} ms) more`);
      return Plan.builder().setTimer(ISOLATED_TIMER, state.isolatedServeMs).build();
    }
    return this.witnessDemotion(demoting, host);
  }

  recheckVouching(host) {
    const state = host.witness();
    if (state === undefined || state.holding || !this.serving(host)
      || this.peerVouches(host) !== undefined) return undefined;
    const why = "this host serves without the witness's leader key and its peer no longer vouches";
    return this.unfenced(state, why, `${why}: demoting`, host);
  }

  onIsolatedTimer(host) {
    const state = host.witness();
    if ((state !== undefined && state.holding) || !this.serving(host)) return Plan.none();
    const peer = this.peerVouches(host);
    if (peer !== undefined) {
      host.log('info', `isolated-serve-ms is over, but ${peer} vouches now: going on serving`);
      return Plan.none();
    }
    return this.witnessDemotion("isolated-serve-ms is over and the witness's leader key is still "
      + 'lost: demoting', host);
  }

  // The peer's name, if the link is up, its facts fresh, and it serves none of ours.
  peerVouches(host) {
    const peer = host.peer();
    const fresh = peer.factsAgeMs !== undefined && BigInt(peer.factsAgeMs) <= VOUCH_FRESH_MS;
    if (peer.facts === undefined || peer.link !== 'up' || !fresh) return undefined;
    const serves = peer.facts.hast.some((status) => status.role === 'primary'
      && this.resource(status.resource) !== undefined);
    return serves ? undefined : peer.facts.host;
  }

  witnessDemotion(why, host) {
    host.log('warn', why);
    return Plan.builder().alert('critical', why).then(this.demote(host)).build();
  }

  syncOnPeer(event, host) {
    const peer = host.peer();
    const peerName = peer.facts === undefined ? 'the peer' : `peer ${peer.facts.host}`;
    switch (event.tag) {
      case 'hast-hook': {
        const hook = event.val;
        const sync = SYNC_HOOKS[hook.tag];
        const resource = hookResource(hook);
        if (sync === undefined || this.resource(resource) === undefined
          || locallyPrimary(resource, host)) return;
        const [state, word] = sync;
        const fact = `${peerName}'s hastd ran \`${word}\` as primary (relayed by the peer link)`;
        this.record(resource, state, fact, host);
        return;
      }
      case 'facts-changed': this.onPeerFacts(event.val, peerName, host); return;
      case 'up': host.log('info', `peer link up (${peerName})`); return;
      case 'down':
        host.log('warn', `peer link down (${peerName}): nothing is done on that alone; the last `
          + 'facts heard are kept');
        return;
      default:
    }
  }

  // The peer's status as its primary: dirty bytes while degraded mean it wrote what we lack;
  // complete with nothing dirty means our copy equals its own.
  onPeerFacts(facts, peerName, host) {
    for (const status of facts.hast) {
      const { resource } = status;
      if (status.role !== 'primary' || this.resource(resource) === undefined
        || locallyPrimary(resource, host)) continue;
      const dirty = BigInt(status.dirtyBytes ?? 0);
      if (status.replication === 'degraded' && dirty > 0n) {
        // A more specific record (an interrupted sync, a split-brain) stays.
        const state = recorded(resource, host);
        if (state !== 'interrupted' && state !== 'split-brain') {
          const fact = `${peerName} is primary, degraded, with ${dirty} dirty bytes (relayed `
            + 'hastctl list)';
          this.record(resource, 'behind', fact, host);
        }
      } else if (status.replication === 'complete' && dirty === 0n) {
        // Polled status lags the hooks: it only settles what no hook spoke about.
        const state = recorded(resource, host);
        if (state === undefined || state === 'behind' || state === 'unknown') {
          const fact = `${peerName} is primary, complete, with 0 dirty bytes (relayed hastctl list)`;
          this.record(resource, 'synced', fact, host);
        }
      }
    }
  }

  // The store was lost: what it held is unknown, which is not nothing known.
  onStateLost(reason, host) {
    for (const { name } of this.resources) {
      if (!locallyPrimary(name, host)) {
        this.record(name, 'unknown', `this policy's stored state was lost (${reason})`, host);
      }
    }
  }

  // Record what this host's hastd hook says about one of our resources. Only a split-brain asks
  // for anything: an alert for a human.
  syncOnHook(hook, host) {
    const resource = hookResource(hook);
    if (this.resource(resource) === undefined) return Plan.none();
    const sync = SYNC_HOOKS[hook.tag];
    if (sync !== undefined) {
      const [state, word] = sync;
      this.recordOwnSync(resource, word, state, host);
    } else if (hook.tag === 'split-brain') {
      this.recordSplitBrain(resource, host);
      return splitBrainAlert(resource);
    } else if (hook.tag === 'role-changed') {
      this.onRoleChange(hook.val, host);
    } else if (hook.tag === 'connect') {
      logAbout(host, 'info', resource, 'the peer connected');
    } else if (hook.tag === 'disconnect') {
      logAbout(host, 'info', resource, 'the peer went away');
    }
    return Plan.none();
  }

  recordSplitBrain(resource, host) {
    if (locallyPrimary(resource, host)) {
      logAbout(host, 'warn', resource,
        'split-brain not recorded: this host is primary, its copy is the one in use');
      return;
    }
    this.record(resource, 'split-brain', "this host's hastd ran `split-brain`", host);
  }

  // Sync hooks describe the copy being written: ours only while we are secondary.
  recordOwnSync(resource, hook, state, host) {
    const { role } = host.hastStatus(resource);
    if (role === 'secondary') {
      this.record(resource, state, `this host's hastd ran \`${hook}\``, host);
      return;
    }
    logAbout(host, 'info', resource,
      `${hook} not recorded: in role ${role} it describes the peer's copy, not ours`);
  }

  // Becoming primary makes our copy the authoritative one; init to secondary after a
  // split-brain is the recovery, and a full resync follows.
  onRoleChange(change, host) {
    if (change.new === 'primary') {
      host.kvRemove(`sync:${change.resource}`);
      host.kvRemove(`sync-fact:${change.resource}`);
    } else if (change.old === 'init' && change.new === 'secondary'
      && recorded(change.resource, host) === 'split-brain') {
      const fact = 'recovering from a split-brain (role init to secondary): a full resync follows';
      this.record(change.resource, 'syncing', fact, host);
    } else {
      logAbout(host, 'debug', change.resource, `role changed from ${change.old} to ${change.new}`);
    }
  }
}

function alert(severity, message) {
  return Plan.builder().alert(severity, message).build();
}

// The havenctl command an operator request came from.
function command(ask) {
  switch (ask.tag) {
    case 'switchover': return ask.val === undefined ? 'switchover' : `switchover --to ${ask.val}`;
    case 'maintenance': return `maintenance ${ask.val ? 'on' : 'off'}`;
    default: return `promote --accept-incomplete ${ask.val}`;
  }
}

function recorded(resource, host) {
  const value = host.kvGet(`sync:${resource}`);
  if (value !== undefined && !SYNC_STATES.includes(value)) {
    throw new Error(`kv \`sync:${resource}\` holds \`${value}\`, which is no sync state`);
  }
  return value;
}

function factOf(resource, host) {
  return host.kvGet(`sync-fact:${resource}`) ?? 'no fact recorded';
}

function peerHeardAfterUnknownRefusal(host) {
  if (host.kvGet(UNKNOWN_REFUSED) === undefined || host.peer().facts === undefined) return false;
  host.kvRemove(UNKNOWN_REFUSED);
  return true;
}

function locallyPrimary(resource, host) {
  return host.hastStatus(resource).role === 'primary';
}

function hookResource(hook) {
  return hook.tag === 'role-changed' ? hook.val.resource : hook.val;
}

function logAbout(host, level, resource, what) {
  host.log(level, `HAST resource \`${resource}\`: ${what}`);
}

function splitBrainAlert(resource) {
  const message = `HAST resource \`${resource}\`: split-brain (both hosts wrote while apart; `
    + "hastd's worker exited). Nothing is done automatically. Decide which host has the newer "
    + `data; on the host with the OLDER data run \`hastctl role init ${resource}\`, \`hastctl `
    + `create ${resource}\`, \`hastctl role secondary ${resource}\`; then on the primary watch `
    + `\`dirty\` fall to 0 with \`hastctl list ${resource}\` before any switch-over.`;
  return alert('critical', message);
}

/** `2026-12-04 19:20:03 UTC` from milliseconds since 1970 (proleptic Gregorian). */
export function utc(unixMs) {
  const seconds = Math.floor(Number(unixMs) / 1000);
  const days = Math.floor(seconds / 86400);
  const ofDay = seconds % 86400;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const dayOfEra = z % 146097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460)
    + Math.floor(dayOfEra / 36524) - Math.floor(dayOfEra / 146096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4)
    - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const two = (n) => String(n).padStart(2, '0');
  return `${String(year).padStart(4, '0')}-${two(month)}-${two(day)} `
    + `${two(Math.floor(ofDay / 3600))}:${two(Math.floor(ofDay / 60) % 60)}:${two(ofDay % 60)} UTC`;
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
