// wasm_host.js: the host inside the component, where every question goes to havend. It imports
// the contract's interfaces, which exist only inside the component, so unit tests (Node) never
// load this file; they use haven_policy.js's ScriptedHost.

import { state as carpState } from 'haven:policy/carp@4.0.0';
import { status as hastStatus, workerRunning } from 'haven:policy/hast@4.0.0';
import { mounted, deviceExists } from 'haven:policy/storage@4.0.0';
import { isRunning } from 'haven:policy/services@4.0.0';
import { nowMs, unixMs } from 'haven:policy/clock@4.0.0';
import { state as peerState } from 'haven:policy/peer@4.0.0';
import { maintenance } from 'haven:policy/operator@4.0.0';
import { state as witnessState } from 'haven:policy/witness@4.0.0';
import { get, set, remove } from 'haven:policy/kv@4.0.0';
import { log } from 'haven:policy/log@4.0.0';
import { QueryRefused } from './haven_policy.js';

/** A query's error (a `query-error` or a string) as `QueryRefused` with havend's reason. */
function answer(call) {
  try {
    return call();
  } catch (error) {
    const payload = error && error.payload !== undefined ? error.payload : error;
    const reason = payload && payload.val !== undefined ? payload.val : String(payload);
    throw new QueryRefused(reason);
  }
}

export class WasmHost {
  carpState(vhid) { return carpState(vhid); }
  hastStatus(resource) { return answer(() => hastStatus(resource)); }
  hastWorkerRunning(resource, role) { return answer(() => workerRunning(resource, role)); }
  mounted(mountpoint) { return answer(() => mounted(mountpoint)); }
  deviceExists(path) { return answer(() => deviceExists(path)); }
  serviceRunning(name) { return answer(() => isRunning(name)); }
  nowMs() { return nowMs(); }
  unixMs() { return unixMs(); }
  peer() { return peerState(); }
  maintenance() { return maintenance(); }
  witness() { return witnessState(); }
  kvGet(key) { return get(key); }
  kvSet(key, value) { return answer(() => set(key, value)); }
  kvRemove(key) { remove(key); }
  log(level, message) { log(level, message); }
}
