import { describe, expect, it } from 'vitest';
import { experimentTable, formatExperimentTable, type RunRecord } from '../../lib/stats/experiments';
import { Mulberry32 } from '../../lib/policy/rng';

function run(group: string, seed: number, p: Record<string, number>, rng: Mulberry32, games = 50): RunRecord {
  const g: Record<string, number[]> = {};
  const success: Record<string, number> = {};
  for (const [split, q] of Object.entries(p)) {
    g[split] = Array.from({ length: games }, () => (rng.next() < q ? 1 : 0));
    success[split] = g[split].reduce((a, b) => a + b, 0) / games;
  }
  return { group, seed, success, games: g };
}

describe('experiment tables', () => {
  it('groups seeds, picks the best other group per split, and tests the target against it', () => {
    const rng = new Mulberry32(2);
    const runs: RunRecord[] = [];
    for (const seed of [101, 102, 103, 104, 105]) {
      runs.push(run('memq+em', seed, { valid_seen: 0.6, valid_unseen: 0.5 }, rng));
      runs.push(run('prior', seed, { valid_seen: 0.3, valid_unseen: 0.35 }, rng));
      runs.push(run('nec', seed, { valid_seen: 0.35, valid_unseen: 0.1 }, rng));
    }
    const t = experimentTable(runs, { target: 'memq+em', resamples: 2000 });
    expect(t.groups.map((g) => g.group)).toEqual(['memq+em', 'prior', 'nec']);
    expect(t.groups[0].seeds).toEqual([101, 102, 103, 104, 105]);
    const mean = (g: string, s: string) => runs.filter((r) => r.group === g).reduce((a, r) => a + r.success[s], 0) / 5;
    expect(t.groups[1].splits.valid_seen.mean).toBeCloseTo(mean('prior', 'valid_seen'), 12);
    const seen = t.target!.comparisons.find((c) => c.split === 'valid_seen')!;
    const unseen = t.target!.comparisons.find((c) => c.split === 'valid_unseen')!;
    expect(seen.baseline).toBe(mean('nec', 'valid_seen') > mean('prior', 'valid_seen') ? 'nec' : 'prior');
    expect(unseen.baseline).toBe('prior');
    expect(unseen.relative.estimate).toBeCloseTo(mean('memq+em', 'valid_unseen') / mean('prior', 'valid_unseen') - 1, 12);
    expect(unseen.relative.lo).toBeLessThan(unseen.relative.estimate);
    expect(unseen.relative.hi).toBeGreaterThan(unseen.relative.estimate);
    expect(unseen.welch!.p).toBeLessThan(0.05);
    expect(unseen.paired).toBeDefined();
    expect(unseen.paired!.lo).toBeGreaterThan(0);
    const text = formatExperimentTable(t);
    expect(text).toMatch(/memq\+em against the best other group per split/);
    expect(text).toMatch(/valid_unseen: vs prior: relative improvement/);
  });

  it('no paired test when seeds or game lists differ; errors name unknown groups', () => {
    const rng = new Mulberry32(3);
    const runs = [run('a', 1, { s: 0.5 }, rng), run('a', 2, { s: 0.5 }, rng), run('b', 1, { s: 0.4 }, rng), run('b', 3, { s: 0.4 }, rng)];
    const t = experimentTable(runs, { target: 'a', resamples: 500 });
    expect(t.target!.comparisons[0].paired).toBeUndefined();
    expect(t.target!.comparisons[0].welch).toBeDefined();
    expect(() => experimentTable(runs, { target: 'c' })).toThrow(/target group 'c'/);
    expect(() => experimentTable(runs, { target: 'a', baselines: ['z'] })).toThrow(/baseline group 'z'/);
  });
});
