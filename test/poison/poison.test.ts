import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { ATTACK_VALUE, craftPoison, parseDefences, runPoison, formatPoisonTable, type PoisonReport } from '../../lib/cli/commands/poison';
import { EpisodicMemory } from '../../lib/memory/episodic';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false });
  return { code, out, err };
}

describe('craftPoison', () => {
  it('copies the worst action of the most frequent states and takes per-action centroids (exact small memory)', async () => {
    const mem = new EpisodicMemory({ dim: 2, backend: 'js' });
    await mem.write([
      { key: [0, 0], value: 0.9, state: 'A', action: 'go', source: 'train' },
      { key: [0, 1], value: 0.1, state: 'A', action: 'look', source: 'train' },
      { key: [2, 0], value: 0.8, state: 'B', action: 'go', source: 'train' },
      { key: [2, 2], value: 0.0, state: 'B', action: 'look', source: 'train' },
      { key: [4, 4], value: 0.2, state: 'A', action: 'look', source: 'train' },
      { key: [9, 9], value: 0.0, state: 'Z', action: 'look', source: 'demo' }, // not the agent's own
    ]);
    const recs = craftPoison(mem, 3, 'mix', 'import:attacker');
    // 2 centroids ('look': 2 states, mean value 0.1 → score 2·0.89; 'go': 2 states, 0.85 → 2·0.056), then 1 copy
    expect(recs.map((r) => [r.action, r.value, r.source])).toEqual([
      ['look', ATTACK_VALUE, 'import:attacker'],
      ['go', ATTACK_VALUE, 'import:attacker'],
      // state A has visits 3 (most frequent): its lowest-valued case is id 1 ('look', 0.1)
      ['look', ATTACK_VALUE, 'import:attacker'],
    ]);
    const want = [[2, 7 / 3], [1, 0], [0, 1]];
    recs.forEach((r, i) => want[i].forEach((x, j) => expect((r.key as Float32Array)[j]).toBeCloseTo(x, 6)));
    expect(craftPoison(mem, 2, 'copy', 'train').map((r) => r.state)).toEqual(['A', 'B']);
  });

  it('parseDefences: none always first; each; bad names refused', () => {
    expect(parseDefences([])).toEqual(['none', 'all']);
    expect(parseDefences(['clip,caps'])).toEqual(['none', 'clip', 'caps']);
    expect(parseDefences(['each'])).toEqual(['none', 'caps', 'clip', 'quarantine', 'auth', 'hubs', 'all']);
    expect(() => parseDefences(['magic'])).toThrow(/--defence magic/);
  });
});

describe('memq poison', () => {
  it('a small deterministic run: the attack captures reads without defences; quarantine hides the imported records', async () => {
    const opts = { env: 'household', records: 4, defences: parseDefences(['all']), attackers: ['import', 'forged-self'] as const, attack: 'mix' as const, seeds: [3], episodes: 4, demos: 4, evalGames: 2 };
    const r: PoisonReport = await runPoison({ ...opts, attackers: [...opts.attackers] });
    const row = (a: string, d: string) => r.rows.find((x) => x.attacker === a && x.defence === d)!;
    expect(r.rows.map((x) => `${x.attacker}|${x.defence}`).sort()).toEqual(
      ['clean|none', 'import|none', 'forged-self|none', 'clean|all', 'import|all', 'forged-self|all'].sort(),
    );
    expect(r.seeds).toEqual([3]);
    // clean memories hold no poison
    expect(row('clean', 'none').capture.mean).toBe(0);
    // undefended: the imported records reach the top-M of most decisions
    expect(row('import', 'none').capture.mean).toBeGreaterThan(0.5);
    expect(row('import', 'none').changed.mean).toBeGreaterThan(0);
    // defended: every imported record is quarantined, never read, and no decision changes
    expect(row('import', 'all').quarantined).toBe(4);
    expect(row('import', 'all').capture.mean).toBe(0);
    expect(row('import', 'all').readCapture.mean).toBe(0);
    expect(row('import', 'all').changed.mean).toBe(0);
    expect(row('import', 'all').success.mean).toBe(row('clean', 'all').success.mean);
    // authenticated provenance ('all' includes it): the forged self-writes carry no MAC, are
    // stored as unverified:train and quarantined like the imports
    expect(row('forged-self', 'none').capture.mean).toBeGreaterThan(0.5);
    expect(row('forged-self', 'all').quarantined).toBe(4);
    expect(row('forged-self', 'all').capture.mean).toBe(0);
    expect(row('forged-self', 'all').changed.mean).toBe(0);
    expect(row('forged-self', 'all').success.mean).toBe(row('clean', 'all').success.mean);
    expect(r.defences.all).toMatchObject({ authenticate: true }); // the report never holds the key
    for (const x of r.rows) for (const v of [x.capture, x.changed, x.success]) expect(v.mean >= 0 && v.mean <= 1).toBe(true);
    expect(formatPoisonTable(r)).toMatch(/import\s+all\s+0\.0/);
  }, 120_000);

  it('the CLI: help, and bad flags refused naming the flag', async () => {
    const h = await cli(['poison', '--help']);
    expect(h.code).toBe(0);
    expect(h.out).toMatch(/--defence/);
    expect((await cli(['poison', '--records', '0'])).err).toMatch(/--records must be an integer in \[1, 10000\]/);
    expect((await cli(['poison', '--defence', 'magic'])).err).toMatch(/--defence magic/);
    expect((await cli(['poison', '--env', 'nowhere'])).err).toMatch(/--env must be one of/);
    expect((await cli(['poison', '--attacker', 'ghost'])).err).toMatch(/--attacker ghost/);
    expect((await cli(['poison', '--run', '/nonexistent/run'])).err).toMatch(/no config.json/);
  });
});
