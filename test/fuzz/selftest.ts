/**
 * Entries that misbehave on purpose (MEMQ_FUZZ_SELFTEST=1 replaces the table with them), so
 * the harness's own oracles can be tested: a crash in the child, a wrong error class, bad input
 * accepted, state changed by a failed call, a wrong result.
 */
import type { Entry } from './core';
import { Expect } from './values';

const state = { size: 0 };

export const selfTestEntries: Entry[] = [
  {
    name: 'selftest.ok',
    area: 'native/addon',
    weight: 20,
    make: () => ({ desc: 'selftest.ok()', expect: new Expect(), run: () => 1, onOk: (v) => (v === 1 ? undefined : 'not 1') }),
  },
  {
    name: 'selftest.wrongClass',
    area: 'lib/retrieval',
    weight: 1,
    make: () => ({
      desc: 'selftest.wrongClass()',
      expect: new Expect().bad('RangeError', 'm is NaN'),
      run: () => {
        throw new TypeError('m must be an integer');
      },
    }),
  },
  {
    name: 'selftest.accepts',
    area: 'lib/retrieval',
    weight: 1,
    make: () => ({ desc: 'selftest.accepts(NaN)', expect: new Expect().bad('RangeError', 'NaN'), run: () => 0 }),
  },
  {
    name: 'selftest.stateChange',
    area: 'lib/memory',
    weight: 1,
    make: () => {
      const before = state.size;
      return {
        desc: 'selftest.stateChange()',
        expect: new Expect().bad('RangeError', 'capacity'),
        run: () => {
          state.size++;
          throw new RangeError('capacity exceeded');
        },
        unchanged: () => (state.size === before ? undefined : `size ${state.size}, was ${before}`),
      };
    },
  },
  {
    name: 'selftest.wrongResult',
    area: 'lib/retrieval',
    weight: 1,
    make: () => ({ desc: 'selftest.wrongResult()', expect: new Expect(), run: () => 2, onOk: (v) => (v === 3 ? undefined : `got ${v}, expected 3`) }),
  },
  {
    name: 'selftest.abort',
    area: 'native/addon',
    weight: 1,
    make: () => ({ desc: 'process.abort()', expect: new Expect(), run: () => process.abort() }),
  },
];
