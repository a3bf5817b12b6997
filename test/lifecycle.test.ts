import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { MACHINE_EVENTS, MACHINE_STATES, TransitionError, canTransition, transition, type MachineEventType, type MachineState } from '../server/inventory/lifecycle.js';

/**
 * Every (state, event) pair, named: the allowed ones with their target, and every other pair
 * refused. A new state or event fails this table until someone decides its row.
 */
const ALLOWED: Record<string, MachineState> = {
  'discovered + assign': 'assigned',
  'assigned + unassign': 'discovered',
  'assigned + installer-served': 'provisioning',
  'provisioning + installer-served': 'provisioning',
  'reimaging + installer-served': 'provisioning',
  'provisioning + installed': 'installed',
  'installed + phoned-home': 'ready',
  'ready + join-started': 'joining',
  'joining + joined': 'joined',
  'assigned + fail': 'failed',
  'provisioning + fail': 'failed',
  'installed + fail': 'failed',
  'ready + fail': 'failed',
  'joining + fail': 'failed',
  'joined + fail': 'failed',
  'reimaging + fail': 'failed',
  'failed + retry': 'assigned',
  'assigned + reimage': 'reimaging',
  'provisioning + reimage': 'reimaging',
  'installed + reimage': 'reimaging',
  'ready + reimage': 'reimaging',
  'joining + reimage': 'reimaging',
  'joined + reimage': 'reimaging',
  'failed + reimage': 'reimaging',
};

const table = suite('lifecycle: every transition');

for (const state of MACHINE_STATES) {
  for (const event of MACHINE_EVENTS) {
    const key = `${state} + ${event}`;
    const expected = ALLOWED[key];
    table(key + (expected ? ` → ${expected}` : ' refused'), () => {
      assert.is(canTransition(state, event), expected !== undefined);
      if (expected === undefined) {
        assert.throws(() => transition({ state }, event), (err: unknown) => err instanceof TransitionError && err.code === 'ERR_TRANSITION');
      } else {
        assert.is(transition({ state }, event).state, expected);
      }
    });
  }
}

table('the table names only real states and events', () => {
  for (const key of Object.keys(ALLOWED)) {
    const [state, event] = key.split(' + ') as [MachineState, MachineEventType];
    assert.ok(MACHINE_STATES.includes(state), state);
    assert.ok(MACHINE_EVENTS.includes(event), event);
  }
});

table.run();

const failure = suite('lifecycle: failure and retry');

const RETRY: [MachineState, MachineState][] = [
  ['assigned', 'assigned'],
  ['provisioning', 'assigned'],
  ['installed', 'installed'],
  ['ready', 'ready'],
  ['joining', 'ready'],
  ['joined', 'joined'],
  ['reimaging', 'reimaging'],
];
for (const [from, back] of RETRY) {
  failure(`failed while ${from}: remembered, and retry returns to ${back}`, () => {
    const failed = transition({ state: from }, 'fail');
    assert.equal(failed, { state: 'failed', failedFrom: from });
    assert.equal(transition(failed, 'retry'), { state: back, failedFrom: null });
  });
}

failure.run();
