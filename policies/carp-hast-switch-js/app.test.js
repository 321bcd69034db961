// Unit tests of the core port (node --test, in a folder with haven_policy.js;
// host/cli/tests/languages.rs assembles one).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CarpHastSwitch } from './app.js';
import { Plan, ScriptedHost, events } from './haven_policy.js';

const SETTINGS = {
  vhid: 1, services: ['mysql-server'], 'hold-down-ms': 5000,
  resources: [{ name: 'test', mountpoint: '/hast/test', fstype: 'ufs' }],
};

const secondary = () => new ScriptedHost().hast('test', 'secondary').device('/dev/hast/test', false)
  .mount('/hast/test').service('mysql-server', false).at(1000);

test('master promotes in the recipe\'s order', () => {
  const plan = new CarpHastSwitch(SETTINGS).handle(events.carp(1, 'em0', 'master'), secondary());
  const expected = Plan.builder()
    .waitWorkerGone('test', 'secondary', 10000)
    .hastRole('test', 'primary', 30000)
    .waitDevice('/dev/hast/test', 30000)
    .fsck('/dev/hast/test', 'ufs', true, 600000)
    .mount('/dev/hast/test', '/hast/test', 'ufs', 60000)
    .startService('mysql-server', 120000)
    .build();
  assert.deepEqual(plan, expected);
});

test('an edge within the hold-down settles on a timer', () => {
  const host = secondary();
  const policy = new CarpHastSwitch(SETTINGS);
  policy.handle(events.carp(1, 'em0', 'master'), host);
  assert.equal(host.kv.get('last-act-ms'), '1000');
  const plan = policy.handle(events.carp(1, 'em0', 'backup'), host.at(2000));
  assert.deepEqual(plan, Plan.builder().setTimer('settle', 5000).build());
  assert.equal(host.kv.get('desired'), 'backup');
  assert.equal(host.kv.get('settle-pending'), '1');
});

test('settings outside the port are refused by name', () => {
  assert.throws(() => new CarpHastSwitch({ ...SETTINGS, bogus: 1 }), /bogus/);
});

test('an interrupted sync refuses the promotion and names the fact', () => {
  const host = secondary().atUnix(1764876003000n);
  const policy = new CarpHastSwitch(SETTINGS);
  const hook = { tag: 'hast-hook', val: { tag: 'sync-interrupted', val: 'test' } };
  assert.ok(policy.handle(hook, host).isNone());
  assert.equal(host.kv.get('sync:test'), 'interrupted');
  assert.equal(host.kv.get('sync-fact:test'),
    "this host's hastd ran `syncintr`, recorded 2025-12-04 19:20:03 UTC");
  const plan = policy.handle(events.carp(1, 'em0', 'master'), host);
  assert.equal(plan.steps.length, 1);
  const { severity, message } = plan.steps[0].action.val;
  assert.equal(severity, 'critical');
  assert.match(message, /refusing to promote/);
  assert.match(message, /`test` \(interrupted: this host's hastd ran `syncintr`/);
});

const primary = () => new ScriptedHost().hast('test', 'primary', 'complete', 0n)
  .device('/dev/hast/test', true).mount('/hast/test', '/dev/hast/test')
  .service('mysql-server', true).at(1000);

test('a switchover with no peer link is refused and changes nothing', () => {
  const host = primary();
  const event = { tag: 'operator', val: { uid: 0, ask: { tag: 'switchover', val: undefined } } };
  const plan = new CarpHastSwitch(SETTINGS).handle(event, host);
  assert.equal(plan.steps.length, 1);
  const { severity, message } = plan.steps[0].action.val;
  assert.equal(severity, 'warning');
  assert.ok(message.startsWith('switchover refused: no peer link is configured ([peer] in haven.toml)'));
  assert.equal(host.kv.has('carp-demoted'), false);
});

test('a serving host that loses the witness key and has no voucher demotes', () => {
  const state = { reachable: true, leader: undefined, holding: false, isolatedServeMs: 0 };
  const event = { tag: 'witness', val: { change: { tag: 'key-lost', val: 7n }, state } };
  const plan = new CarpHastSwitch(SETTINGS).handle(event, primary());
  assert.match(plan.steps[0].action.val.message, /fencing token 7/);
  assert.deepEqual(plan.steps.slice(1), Plan.builder()
    .stopService('mysql-server', 120000)
    .unmount('/hast/test', true, 60000)
    .hastRole('test', 'secondary', 30000)
    .build().steps);
});
