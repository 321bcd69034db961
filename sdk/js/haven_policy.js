// haven_policy.js: what haven-sdk is to a Rust policy, for a JavaScript one.
//
// A Haven policy only decides: it gets an event, may ask read-only questions about the
// machine, and answers with a plan. This module gives a JavaScript policy the same shape as a
// Rust one, in plain JavaScript that runs on Node for unit tests and inside the component
// (ComponentizeJS) for Haven:
//
// - `Policy`: extend it, give `static info()` and `handle(event, host)`; the constructor gets
//   the `[policy.settings]` table as an object and throws to refuse it.
// - `exportPolicy(MyPolicy, host)`: the component's `handler` export. An exception becomes the
//   call's error with its name, message and where it was thrown, so the operator reads
//   `returned an error: TypeError: ... (at app.js:14:46)` instead of a bare trap.
// - `ScriptedHost`: answers what a test scripted, and refuses any other question with
//   `QueryRefused`, as havend refuses one outside the policy's grants. `WasmHost`
//   (wasm_host.js) asks havend; it imports the contract's interfaces, which only exist inside
//   the component, so it lives in a file of its own that unit tests never load.
// - `Plan`: `Plan.none()` or `Plan.builder().startService('nginx').build()`.
// - `events`: the events a test hands to `handle`.
//
// Values follow the contract's JavaScript mapping (ComponentizeJS): a variant is
// `{ tag: 'carp-changed', val: {...} }`, an enum a string (`'master'`), an option `undefined`
// or the value, and field names are camelCase (`timeoutMs`).

export class QueryRefused extends Error {
  constructor(message) {
    super(message);
    this.name = 'QueryRefused';
  }
}

/** A host for unit tests, built by chaining: `new ScriptedHost().service('nginx', false)`. */
export class ScriptedHost {
  constructor() {
    this.carpStates = new Map();
    this.hastStatuses = new Map();
    this.workers = new Map();
    this.mounts = new Map();
    this.devices = new Map();
    this.services = new Map();
    this.now = 0;
    this.unix = 0;
    // As havend answers with no [peer] configured.
    this.peerState = { link: 'not-configured', linkForMs: 0n, facts: undefined, factsAgeMs: undefined };
    this.maintenanceState = undefined;
    this.witnessState = undefined;
    this.kv = new Map();
    this.logs = [];
  }

  carp(vhid, state) { this.carpStates.set(vhid, state); return this; }
  hast(resource, role, replication = 'complete', dirtyBytes = undefined) {
    this.hastStatuses.set(resource, { resource, role, replication, dirtyBytes });
    return this;
  }
  worker(resource, role, running) { this.workers.set(`${resource} ${role}`, running); return this; }
  /** `device` undefined scripts the mountpoint as not mounted. */
  mount(mountpoint, device = undefined, fstype = 'ufs') {
    this.mounts.set(mountpoint, device === undefined ? undefined : { device, mountpoint, fstype });
    return this;
  }
  device(path, exists) { this.devices.set(path, exists); return this; }
  service(name, running) { this.services.set(name, running); return this; }
  at(nowMs) { this.now = nowMs; return this; }
  atUnix(unixMs) { this.unix = unixMs; return this; }
  /** The peer link in `link` for `forMs` milliseconds (the facts are kept). */
  peerLink(link, forMs = 0) {
    this.peerState = { ...this.peerState, link, linkForMs: BigInt(forMs) };
    return this;
  }
  /** This host in maintenance since `sinceUnixMs`, turned on by `uid`. */
  inMaintenance(sinceUnixMs, uid) { this.maintenanceState = { sinceUnixMs: BigInt(sinceUnixMs), uid }; return this; }
  /** The witness as this host sees it. */
  withWitness(state) { this.witnessState = state; return this; }
  /** The peer's last facts, `ageMs` old. */
  peerFacts(facts, ageMs = 0) {
    this.peerState = { ...this.peerState, facts, factsAgeMs: BigInt(ageMs) };
    return this;
  }

  static scripted(table, key, what) {
    if (!table.has(key)) throw new QueryRefused(`${what} ${JSON.stringify(key)} was not scripted`);
    return table.get(key);
  }

  carpState(vhid) { return this.carpStates.get(vhid); }
  hastStatus(resource) { return ScriptedHost.scripted(this.hastStatuses, resource, 'HAST resource'); }
  hastWorkerRunning(resource, role) {
    return ScriptedHost.scripted(this.workers, `${resource} ${role}`, 'HAST worker');
  }
  mounted(mountpoint) { return ScriptedHost.scripted(this.mounts, mountpoint, 'mountpoint'); }
  deviceExists(path) { return ScriptedHost.scripted(this.devices, path, 'device'); }
  serviceRunning(name) { return ScriptedHost.scripted(this.services, name, 'service'); }
  nowMs() { return this.now; }
  unixMs() { return this.unix; }
  peer() { return this.peerState; }
  maintenance() { return this.maintenanceState; }
  witness() { return this.witnessState; }
  kvGet(key) { return this.kv.get(key); }
  kvSet(key, value) { this.kv.set(key, value); }
  kvRemove(key) { this.kv.delete(key); }
  log(level, message) { this.logs.push([level, message]); }
}

/** The steps to carry out, in order; an empty plan means no action. */
export class Plan {
  constructor(steps = []) { this.steps = steps; }
  static none() { return new Plan(); }
  static builder() { return new PlanBuilder(); }
  isNone() { return this.steps.length === 0; }
}

/** Builds a plan step by step; a step's timeout is the daemon's default when not given. */
export class PlanBuilder {
  constructor() { this.steps = []; }
  add(tag, val, timeoutMs = undefined) {
    this.steps.push({ action: val === undefined ? { tag } : { tag, val }, timeoutMs });
    return this;
  }
  hastRole(resource, role, timeoutMs) { return this.add('set-hast-role', { resource, role }, timeoutMs); }
  waitDevice(path, timeoutMs) { return this.add('wait-for-device', path, timeoutMs); }
  waitWorkerGone(resource, role, timeoutMs) {
    return this.add('wait-hast-worker-gone', { resource, role }, timeoutMs);
  }
  fsck(device, fstype, preen = true, timeoutMs) { return this.add('fsck', { device, fstype, preen }, timeoutMs); }
  mount(device, mountpoint, fstype, timeoutMs) { return this.add('mount', { device, mountpoint, fstype }, timeoutMs); }
  unmount(mountpoint, force = false, timeoutMs) { return this.add('unmount', { mountpoint, force }, timeoutMs); }
  startService(name, timeoutMs) { return this.add('service', { name, op: 'start' }, timeoutMs); }
  stopService(name, timeoutMs) { return this.add('service', { name, op: 'stop' }, timeoutMs); }
  setTimer(name, afterMs) { return this.add('set-timer', { name, afterMs }); }
  cancelTimer(name) { return this.add('cancel-timer', name); }
  alert(severity, message) { return this.add('alert', { severity, message }); }
  demoteCarp(vhid) { return this.add('demote-carp', vhid); }
  liftCarpDemotion(vhid) { return this.add('lift-carp-demotion', vhid); }
  /** Another plan's steps after these. */
  then(plan) { this.steps.push(...plan.steps); return this; }
  build() { return new Plan(this.steps); }
}

/** Extend it: `static info()`, a constructor taking the settings, `handle(event, host)`. */
export class Policy {
  static info() { throw new Error('a policy must have static info()'); }
  constructor(settings) { this.settings = settings; }
  handle(_event, _host) { throw new Error('a policy must have handle(event, host)'); }
}

/** Events for unit tests, as havend hands them over. */
export const events = {
  carp: (vhid, iface, state, previous = undefined) =>
    ({ tag: 'carp-changed', val: { vhid, interface: iface, state, previous } }),
  timer: (name) => ({ tag: 'timer-fired', val: name }),
  hastStatus: (resource, role, replication = 'complete', dirtyBytes = undefined) =>
    ({ tag: 'hast-status-changed', val: { resource, role, replication, dirtyBytes } }),
};

/** An exception as the operator reads it: name, message, and where the policy threw it. */
export function describeError(error) {
  if (!(error instanceof Error)) return `threw ${typeof error}: ${String(error)}`;
  // The first frame of the stack: `handle@app.js:14:46` (SpiderMonkey) or `at ... (file:...)`.
  const frame = (error.stack || '').split('\n').find((line) => line.trim() !== '') || '';
  const where = frame.match(/([^/@( ]+\.[cm]?js):(\d+):(\d+)/);
  return `${error.name}: ${error.message}${where ? ` (at ${where[1]}:${where[2]}:${where[3]})` : ''}`;
}

/** The component's `handler` export for `PolicyClass`, asking `host`. */
export function exportPolicy(PolicyClass, host) {
  let settingsJson = '';
  const build = (json) => {
    try {
      return new PolicyClass(json ? JSON.parse(json) : {});
    } catch (error) {
      throw `settings: ${describeError(error)}`;
    }
  };
  return {
    describe() { return PolicyClass.info(); },
    init(settings) {
      build(settings);
      settingsJson = settings;
    },
    handle(event) {
      const policy = build(settingsJson);
      let plan;
      try {
        plan = policy.handle(event, host);
      } catch (error) {
        // The contract's error is a string: a thrown Error object would trap with no message.
        throw describeError(error);
      }
      if (!(plan instanceof Plan)) throw `handle returned ${plan === null ? 'null' : typeof plan}, not a Plan`;
      return { steps: plan.steps };
    },
  };
}
