import { describe, expect, it } from 'vitest';
import { AbstractingEncoder, abstractIds } from '../../lib/encoders/abstract';
import { HashingEncoder } from '../../lib/encoders/hashing';
import { PairEncoder } from '../../lib/encoders/pair';
import { pairText } from '../../lib/encoders/types';

describe('AbstractingEncoder', () => {
  it('drops instance numbers, keeps everything else', () => {
    expect(abstractIds('take apple 2 from cabinet 13')).toBe('take apple from cabinet');
    expect(abstractIds('You arrive at fridge 1. The fridge 1 is closed.')).toBe('You arrive at fridge. The fridge is closed.');
    expect(abstractIds('task: put two cd in safe.')).toBe('task: put two cd in safe.');
  });

  it('analogous situations of different games get the same key; pairs go through the inner fast path', async () => {
    const inner = new HashingEncoder({ dim: 256 });
    const enc = new AbstractingEncoder(inner);
    const [a, b] = [await enc.encode(['take apple 2 from cabinet 13']), await enc.encode(['take apple 1 from cabinet 4'])];
    expect(Array.from(a)).toEqual(Array.from(b));
    const plain = [inner.encode(['take apple 2 from cabinet 13']), inner.encode(['take apple 1 from cabinet 4'])] as Float32Array[];
    expect(Array.from(plain[0])).not.toEqual(Array.from(plain[1]));
    const pairEnc = new AbstractingEncoder(new PairEncoder({ state: new HashingEncoder({ dim: 64 }), action: new HashingEncoder({ dim: 64, seed: 7 }), actionWeight: 0.5 }));
    const viaPairs = await pairEnc.encodePairs('at cabinet 3', ['open cabinet 3', 'go to fridge 1']);
    const direct = await pairEnc.encode([pairText('at cabinet 3', 'open cabinet 3'), pairText('at cabinet 3', 'go to fridge 1')]);
    for (let i = 0; i < direct.length; i++) expect(viaPairs[i]).toBeCloseTo(direct[i], 6);
  });
});
