// Write policies and the merge rule against an independent, deliberately naive model of MATH §8
// (plain arrays, full sorts), on random write sequences with many exact distance ties.
import { describe, expect, it } from 'vitest';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import type { CaseInput, WritePolicy } from '../../lib/memory/types';
import { Mulberry32 } from '../../lib/policy/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

interface ModelCase {
  key: number[];
  action: string;
  value: number;
  visits: number;
  weight: number;
  seq: number;
  touched: number;
}

class NaiveMemory {
  cases: ModelCase[] = [];
  seq = 0;
  clock = 0;
  constructor(
    readonly policy: WritePolicy,
    readonly eps: number,
    readonly rate: number,
  ) {}

  private weight(visits: number, value: number, td: number): number {
    const p = this.policy;
    if (p.kind !== 'importance') return 1;
    return p.weightBy === 'visits' ? visits : p.weightBy === 'return' ? value : Math.abs(td);
  }

  write(batch: CaseInput[]): void {
    const d2 = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
      return s;
    };
    const stored = [...this.cases];
    const fresh: ModelCase[] = [];
    const target: Array<ModelCase | null> = [];
    const batchTarget: Array<ModelCase | null> = [];
    for (const c of batch) {
      let best: ModelCase | null = null;
      let bestD = Infinity;
      let inBatch = false;
      for (const s of stored) {
        const d = d2(c.key, s.key);
        if (s.action === c.action && d <= this.eps ** 2 && d < bestD) [best, bestD] = [s, d];
      }
      for (const f of fresh) {
        const d = d2(c.key, f.key);
        if (f.action === c.action && d <= this.eps ** 2 && d < bestD) [best, bestD, inBatch] = [f, d, true];
      }
      if (!best) {
        const td = c.tdError ?? Math.abs(c.value);
        fresh.push({ key: Array.from(c.key), action: c.action!, value: c.value, visits: 1, weight: c.weight ?? this.weight(1, c.value, td), seq: 0, touched: 0 });
        target.push(null);
        batchTarget.push(null);
        continue;
      }
      const err = c.value - best.value;
      best.value += this.rate * err;
      best.visits += 1;
      best.weight = c.weight ?? this.weight(best.visits, best.value, c.tdError ?? Math.abs(err));
      target.push(inBatch ? null : best);
      batchTarget.push(inBatch ? best : null);
    }
    // Recency order within a batch: merges into stored cases, then appends, then merges into appends.
    for (const t of target) if (t) t.touched = ++this.clock;
    for (const f of fresh) {
      f.seq = ++this.seq;
      f.touched = ++this.clock;
    }
    for (const t of batchTarget) if (t) t.touched = ++this.clock;
    const pool = [...stored, ...fresh];
    const p = this.policy;
    const cap = p.kind === 'window' ? p.size : p.kind === 'unbounded' ? Infinity : p.capacity;
    const key =
      p.kind === 'replay' ? (c: ModelCase) => [c.seq] : p.kind === 'window' ? (c: ModelCase) => [c.touched] : (c: ModelCase) => [c.weight, c.seq];
    pool.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      return ka[0] - kb[0] || (ka[1] ?? 0) - (kb[1] ?? 0);
    });
    this.cases = pool.slice(Math.max(0, pool.length - cap)).sort((a, b) => a.seq - b.seq);
  }
}

const policies: WritePolicy[] = [
  { kind: 'replay', capacity: 10 },
  { kind: 'window', size: 10 },
  { kind: 'importance', capacity: 10, weightBy: 'tdError' },
  { kind: 'importance', capacity: 10, weightBy: 'visits' },
  { kind: 'importance', capacity: 10, weightBy: 'return' },
];
const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];

for (const backend of backends) {
  describe(`write policies + merge against a naive model [${backend}]`, () => {
    for (const policy of policies) {
      it(`${policy.kind}${policy.kind === 'importance' ? ` (${policy.weightBy})` : ''}: 20 random write sequences`, async () => {
        for (let seed = 1; seed <= 20; seed++) {
          const rng = new Mulberry32(seed * 101);
          const eps = 0.75;
          const rate = 0.5;
          const mem = new EpisodicMemory({ dim: 3, backend, policy, merge: { epsilon: eps, rate, candidates: 2 } });
          const model = new NaiveMemory(policy, eps, rate);
          for (let b = 0; b < 15; b++) {
            // Keys on a 0.5 grid: exact float32 distances, many ties, many near-duplicates.
            const batch: CaseInput[] = Array.from({ length: 1 + rng.int(6) }, () => ({
              key: Array.from({ length: 3 }, () => (rng.int(5) - 2) / 2),
              action: rng.next() < 0.5 ? 'a' : 'b',
              value: Math.round(rng.normal() * 8) / 4,
              tdError: rng.next() < 0.7 ? Math.round(rng.next() * 16) / 4 : undefined,
            }));
            await mem.write(batch);
            model.write(batch);
            const got = [...mem.ids()].map((id) => mem.getCase(id)!);
            const where = `seed ${seed}, batch ${b}`;
            expect(got.map((c) => c.seq), where).toEqual(model.cases.map((c) => c.seq));
            got.forEach((c, i) => {
              const w = model.cases[i];
              expect(c.visits, where).toBe(w.visits);
              expect(c.action, where).toBe(w.action);
              expect(c.value, where).toBeCloseTo(w.value, 4);
              expect(c.weight, where).toBeCloseTo(w.weight, 4);
            });
          }
        }
      });
    }
  });
}
