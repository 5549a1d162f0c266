import { describe, expect, it } from 'vitest';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { capGroupShares, capShares, detectHubs, makeTrustPolicy, trustLevelOf } from '../../lib/memory/trust';
import type { CaseInput } from '../../lib/memory/types';
import { TestRng } from '../helpers/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];

/**
 * Independent float64 reference of the capped shares: τ by bisection on
 * f(τ) = c (Σ_g min(K_g, τ) + κ∅) − τ (the largest root), then K'_g = min(K_g, τ).
 */
function refCapGroups(w: number[], group: number[], cap: number, vw: number): number[] {
  if (cap >= 1) return [...w];
  const K = new Map<number, number>();
  w.forEach((x, i) => K.set(group[i], (K.get(group[i]) ?? 0) + x));
  const masses = [...K.values()];
  const f = (t: number) => cap * (masses.reduce((s, k) => s + Math.min(k, t), 0) + vw) - t;
  let lo = 0;
  let hi = masses.reduce((s, k) => s + k, 0) + vw + 1;
  if (!(f(hi / 2 ** 60) > 0) && vw === 0) {
    // no positive root: equal shares at the smallest mass
    const t = Math.min(...masses);
    return w.map((x, i) => (K.get(group[i])! > t ? (x * t) / K.get(group[i])! : x));
  }
  for (let it = 0; it < 200; it++) {
    const mid = (lo + hi) / 2;
    if (f(mid) > 0) lo = mid;
    else hi = mid;
  }
  const t = lo;
  return w.map((x, i) => (K.get(group[i])! > t ? (x * t) / K.get(group[i])! : x));
}

function sharesOf(w: ArrayLike<number>, group: ArrayLike<number>, vw: number): Map<number, number> {
  let z = vw;
  for (let i = 0; i < w.length; i++) z += w[i];
  const s = new Map<number, number>();
  for (let i = 0; i < w.length; i++) s.set(group[i], (s.get(group[i]) ?? 0) + w[i] / z);
  return s;
}

/** Float64 reference read (MATH §3): top-m by distance over all cases, gaussian kernel. */
function refEstimate(keys: Float64Array[], values: number[], q: Float64Array, m: number, h: number, vw: number, vv: number) {
  const d2 = keys.map((k) => k.reduce((s, x, j) => s + (x - q[j]) ** 2, 0));
  const order = d2.map((_, i) => i).sort((a, b) => d2[a] - d2[b] || a - b).slice(0, m);
  let num = vw * vv;
  let den = vw;
  let mem = 0;
  for (const i of order) {
    const k = Math.exp(-d2[i] / (2 * h * h));
    num += k * values[i];
    den += k;
    mem += k;
  }
  return { value: num / den, confidence: mem / den, order };
}

describe('trust policy', () => {
  it('levels: exact names, longest prefix, default; bad options are refused naming the field', () => {
    const p = makeTrustPolicy({ levels: { 'import:partner*': 'trusted', 'import:partner-x': 'untrusted' } });
    expect(trustLevelOf(p, 'self')).toBe('trusted');
    expect(trustLevelOf(p, 'demo')).toBe('trusted');
    expect(trustLevelOf(p, 'import:attacker')).toBe('untrusted');
    expect(trustLevelOf(p, 'import:partner-a')).toBe('trusted');
    expect(trustLevelOf(p, 'import:partner-x')).toBe('untrusted');
    expect(trustLevelOf(p, 'somewhere')).toBe('untrusted');
    expect(() => makeTrustPolicy({ maxSourceShare: 0 })).toThrow(/maxSourceShare must be in \(0, 1\]/);
    expect(() => makeTrustPolicy({ maxCaseShare: '0.5' as any })).toThrow(TypeError);
    expect(() => makeTrustPolicy({ valueRange: { min: 1, max: 0 } })).toThrow(RangeError);
    expect(() => makeTrustPolicy({ quarantine: { k: 0, radius: 1, delta: 1 } })).toThrow(/quarantine.k/);
    expect(() => makeTrustPolicy({ levels: { x: 'maybe' as any } })).toThrow(/levels\["x"\]/);
    expect(() => makeTrustPolicy({ typo: 1 } as any)).toThrow(/unknown option 'typo'/);
  });
});

describe('share caps against a float64 reference', () => {
  it('capGroupShares matches the bisection reference and meets the cap (random cases)', () => {
    const rng = new TestRng(11);
    for (let t = 0; t < 300; t++) {
      const n = 1 + rng.int(12);
      const w = Array.from({ length: n }, () => (rng.next() < 0.2 ? 5 * rng.next() : rng.next() ** 3));
      const groups = Array.from({ length: n }, () => rng.int(4));
      const cap = [0.1, 0.2, 0.3, 0.5, 0.9][rng.int(5)];
      const vw = rng.next() < 0.3 ? 0 : rng.next() * 0.5;
      const got = capGroupShares(w, groups, cap, vw);
      const ref = refCapGroups(w, groups, cap, vw);
      for (let i = 0; i < n; i++) expect(got[i]).toBeCloseTo(ref[i], 9);
      const G = new Set(groups).size;
      if (vw > 0 || cap * G > 1) for (const s of sharesOf(got, groups, vw).values()) expect(s).toBeLessThanOrEqual(cap + 1e-12);
      // groups under the cap keep their weights
      const before = sharesOf(w, groups, vw);
      const maxShare = Math.max(...before.values());
      if (maxShare <= cap) for (let i = 0; i < n; i++) expect(got[i]).toBe(w[i]);
    }
  });

  it('an exact small case: one source with 3/4 of the mass, cap 1/2, κ∅ = 0', () => {
    // masses A = 3, B = 1: τ = ½ (min(3, τ) + 1) → τ = 1; A scaled by 1/3
    const got = capGroupShares([2, 1, 1], [0, 0, 1], 0.5, 0);
    expect(Array.from(got)).toEqual([2 / 3, 1 / 3, 1]);
    // infeasible (one source only, κ∅ = 0): equal shares, i.e. unchanged
    expect(Array.from(capGroupShares([2, 1], [0, 0], 0.5, 0))).toEqual([2, 1]);
  });

  it('capShares meets both caps at once', () => {
    const rng = new TestRng(5);
    for (let t = 0; t < 100; t++) {
      const n = 2 + rng.int(10);
      const w = Array.from({ length: n }, () => rng.next() ** 2 + 1e-3);
      const src = Array.from({ length: n }, () => rng.int(3));
      const vw = 0.05 + rng.next() * 0.2;
      const got = capShares(w, src, 0.25, 0.5, vw);
      let z = vw;
      for (const x of got) z += x;
      for (const x of got) expect(x / z).toBeLessThanOrEqual(0.25 + 1e-9);
      for (const s of sharesOf(got, src, vw).values()) expect(s).toBeLessThanOrEqual(0.5 + 1e-9);
    }
  });
});

async function memoryWith(backend: 'js' | 'native', trust: any, keys: Float32Array, values: number[], sources: string[], D: number, h = 0.8) {
  const mem = new EpisodicMemory({ dim: D, backend, kernel: { kernel: 'gaussian', bandwidth: h }, trust });
  const cases: CaseInput[] = values.map((v, i) => ({ key: keys.subarray(i * D, (i + 1) * D), value: v, source: sources[i], action: `a${i}` }));
  await mem.write(cases);
  return mem;
}

describe.each(backends)('trusted reads (%s)', (backend) => {
  const D = 8;
  it('with no cap binding, the trust path and the fast path agree with the float64 reference', async () => {
    const rng = new TestRng(3);
    const n = 120;
    const keys = rng.keys(n, D);
    const values = Array.from({ length: n }, () => rng.normal());
    const sources = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 'demo' : 'self'));
    const plain = await memoryWith(backend, undefined, keys, values, sources, D);
    const trusted = await memoryWith(backend, { quarantine: false }, keys, values, sources, D);
    const queries = rng.keys(40, D);
    const opts = { voidWeight: 0.05, voidValue: 0.3 };
    const a = await plain.estimate(queries, 10, opts);
    const b = await trusted.estimate(queries, 10, opts);
    const c = await trusted.estimateAuto(queries, 10, opts);
    const kd = Array.from({ length: n }, (_, i) => Float64Array.from(keys.subarray(i * D, (i + 1) * D)));
    for (let q = 0; q < 40; q++) {
      const ref = refEstimate(kd, values.map((v) => Math.fround(v)), Float64Array.from(queries.subarray(q * D, (q + 1) * D)), 10, 0.8, 0.05, 0.3);
      expect(a.value[q]).toBeCloseTo(ref.value, 5);
      expect(b.value[q]).toBeCloseTo(ref.value, 5);
      expect(c.value[q]).toBeCloseTo(ref.value, 5);
      expect(b.confidence[q]).toBeCloseTo(ref.confidence, 5);
    }
  });

  it('the source cap against the float64 reference when it binds', async () => {
    const rng = new TestRng(9);
    const n = 60;
    const keys = rng.keys(n, D);
    const values = Array.from({ length: n }, () => rng.normal());
    const sources = Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 'import:x' : i % 4 === 1 ? 'demo' : 'self'));
    const mem = await memoryWith(backend, { quarantine: false, maxSourceShare: 0.3, maxCaseShare: 1 }, keys, values, sources, D);
    const queries = rng.keys(20, D);
    const est = await mem.estimate(queries, 12, { voidWeight: 0.02, voidValue: 0 });
    const pri = await mem.retrievalPrior(queries, 12, 0.02);
    const kd = Array.from({ length: n }, (_, i) => Float64Array.from(keys.subarray(i * D, (i + 1) * D)));
    let bound = 0;
    for (let q = 0; q < 20; q++) {
      const ref = refEstimate(kd, values, Float64Array.from(queries.subarray(q * D, (q + 1) * D)), 12, 0.8, 0.02, 0);
      const k = ref.order.map((i) => Math.exp(-kd[i].reduce((s, x, j) => s + (x - queries[q * D + j]) ** 2, 0) / (2 * 0.64)));
      const g = ref.order.map((i) => ['import:x', 'demo', 'self'].indexOf(sources[i]));
      const w = refCapGroups(k, g, 0.3, 0.02);
      if (w.some((x, i) => x !== k[i])) bound++;
      const z = w.reduce((s, x) => s + x, 0) + 0.02;
      const v = w.reduce((s, x, i) => s + x * Math.fround(values[ref.order[i]]), 0) / z;
      expect(est.value[q]).toBeCloseTo(v, 5);
      expect(pri[q].confidence).toBeCloseTo(1 - 0.02 / z, 6);
      for (const s of sharesOf(pri[q].caseProbs, Array.from(pri[q].ids, (id) => ['import:x', 'demo', 'self'].indexOf(mem.getCase(id)!.source)), pri[q].voidProb).values()) {
        expect(s).toBeLessThanOrEqual(0.3 + 1e-6);
      }
    }
    expect(bound).toBeGreaterThan(5); // the cap did bind on most queries
  });

  it('values are clipped into a declared range (reads and writes) or a learned one', async () => {
    const keys = Float32Array.from([0, 0, 0.1, 0, 5, 5]);
    const mem = await memoryWith(backend, { quarantine: false, valueRange: { min: 0, max: 1 } }, keys.slice(0, 4), [0.5, 1e6], ['self', 'self'], 2);
    expect(mem.getCase(1)!.value).toBe(1); // clipped at the door
    const e = await mem.estimate(Float32Array.from([0, 0]), 2, { voidWeight: 0 });
    const k1 = Math.exp(-0.01 / (2 * 0.64));
    expect(e.value[0]).toBeCloseTo((0.5 + k1 * 1) / (1 + k1), 6);
    // learned: self values span [0, 1] → range [−0.1, 1.1]; an imported 50 reads as 1.1
    const mem2 = await memoryWith(backend, { quarantine: false, valueRange: 'learned' }, keys, [0, 1, 50], ['self', 'self', 'import:x'], 2);
    expect(await mem2.valueRange()).toEqual({ min: -0.1, max: 1.1 });
    expect(mem2.getCase(2)!.value).toBe(50); // stored as written
    const e2 = await mem2.estimate(Float32Array.from([5, 5]), 1, { voidWeight: 0 });
    expect(e2.value[0]).toBeCloseTo(1.1, 6);
  });

  it('quarantine: an untrusted record is hidden until k self cases within r agree within δ (exact small case)', async () => {
    const rule = { k: 2, radius: 1, delta: 0.2 };
    const mem = new EpisodicMemory({ dim: 2, backend, kernel: { kernel: 'gaussian', bandwidth: 1 }, trust: { quarantine: rule } });
    await mem.write([{ key: [0, 0], value: 0.9, source: 'import:vendor', action: 'x' }]);
    expect(Array.from(await mem.quarantined())).toEqual([0]);
    expect(Array.from((await mem.search(Float32Array.from([0, 0]), 3)).ids)).toEqual([-1, -1, -1]);
    expect((await mem.estimate(Float32Array.from([0, 0]), 3, { voidWeight: 0.1, voidValue: 0 })).value[0]).toBe(0);
    // one agreeing self case (d = 0.5, |Δq| = 0.1), one too far (d = 1.5), one disagreeing (|Δq| = 0.5), one demo (not self)
    await mem.write([
      { key: [0.5, 0], value: 0.8, source: 'self', action: 'y' },
      { key: [1.5, 0], value: 0.9, source: 'self', action: 'y' },
      { key: [0, 0.5], value: 0.4, source: 'self', action: 'y' },
      { key: [0, -0.5], value: 0.9, source: 'demo', action: 'y' },
    ]);
    expect(Array.from(await mem.quarantined())).toEqual([0]);
    // the second agreeing self case, exactly at the radius edge (d = 1) and δ edge (|Δq| = 0.2 within float32)
    await mem.write([{ key: [0, 1], value: 0.7, source: 'train', action: 'y' }]);
    expect(Array.from(await mem.quarantined())).toEqual([]);
    expect(Array.from((await mem.search(Float32Array.from([0, 0]), 1)).ids)).toEqual([0]);
    // a second record of the same source next to it is quarantined on its own terms (value 0)
    await mem.write([{ key: [0.1, 0], value: 0, source: 'import:vendor', action: 'x' }]);
    expect(Array.from(await mem.quarantined())).toEqual([6]);
    expect(mem.getCase(6)!.trust).toBe('untrusted');
  });

  it('an untrusted write never merges into a trusted case (it would launder its value)', async () => {
    const mem = new EpisodicMemory({ dim: 2, backend, merge: { epsilon: 0.1, rate: 0.5 }, trust: {} });
    await mem.write([{ key: [0, 0], value: 0, source: 'self', action: 'a' }]);
    const r = await mem.write([{ key: [0, 0], value: 1e6, source: 'import:attacker', action: 'a' }]);
    expect(r.merged.length).toBe(0);
    expect(mem.getCase(0)!.value).toBe(0);
    const plain = new EpisodicMemory({ dim: 2, backend, merge: { epsilon: 0.1, rate: 0.5 } });
    await plain.write([{ key: [0, 0], value: 0, source: 'self', action: 'a' }]);
    await plain.write([{ key: [0, 0], value: 1e6, source: 'import:attacker', action: 'a' }]);
    expect(plain.getCase(0)!.value).toBe(5e5); // without a policy the merge launders it
  });
});

describe('hub detection', () => {
  it('detectHubs on exact counts', () => {
    const counts = new Map([
      [1, 100],
      [2, 10],
      [3, 12],
      [4, 30],
      [5, 9],
      [6, 3],
    ]);
    const nb: Record<number, number[]> = { 1: [2, 3, 5], 2: [1, 3], 3: [2, 5], 4: [6, 7, 8], 5: [2, 3] };
    const f = detectHubs(counts, (id) => nb[id] ?? [], { window: 1, neighbours: 3, ratio: 4, minCount: 10 });
    // 1: median(10, 12, 9) = 10 → 100 > 4·11 ✓; 4: median(3, 0, 0) = 0 → 30 > 4 ✓; 2: median(100, 12) = 56 ✗; 3: median(10, 9) ✗; 5, 6 under minCount
    expect(f).toEqual([
      { id: 1, count: 100, expected: 10 },
      { id: 4, count: 30, expected: 0 },
    ]);
  });

  it.each(backends)('auditHubs flags a centroid that sits in the top-M of every cluster, and only it (%s)', async (backend) => {
    // 4 tight clusters of 8 cases at 3·e_k; each probe's top-9 is its own 8 cases plus the
    // centroid (distance 2.6 to a centre, other clusters 4.2): exact counts 10 per case, 40 for
    // the centroid, whose neighbourhood median is 10: 40 > 3·(10 + 1).
    const D = 4;
    const mem = new EpisodicMemory({ dim: D, backend, kernel: { kernel: 'gaussian', bandwidth: 1 }, trust: { quarantine: false, hubs: { window: 1000, neighbours: 8, ratio: 3, minCount: 5 } } });
    const rng = new TestRng(2);
    const centres = [0, 1, 2, 3].map((k) => [0, 1, 2, 3].map((j) => (j === k ? 3 : 0)));
    const cases: CaseInput[] = [];
    for (const c of centres) for (let i = 0; i < 8; i++) cases.push({ key: c.map((x) => x + 0.2 * rng.normal()), value: 0.5, source: 'self' });
    await mem.write(cases);
    const r = await mem.write([{ key: [0.75, 0.75, 0.75, 0.75], value: 1, source: 'self' }]);
    const hub = r.added[0];
    const probes = new Float32Array(40 * D);
    centres.forEach((c, k) => {
      for (let i = 0; i < 10; i++) for (let j = 0; j < D; j++) probes[(k * 10 + i) * D + j] = c[j] + 0.2 * rng.normal();
    });
    const captured = (ids: Int32Array) => {
      let n = 0;
      for (let q = 0; q < 40; q++) if (Array.from(ids.subarray(q * 9, q * 9 + 9)).includes(hub)) n++;
      return n;
    };
    expect(captured(await mem.effectiveTopM(probes, 9))).toBe(40);
    const flagged = await mem.auditHubs(probes, 9);
    expect(flagged).toEqual([{ id: hub, count: 40, expected: 10 }]);
    expect(Array.from(await mem.quarantined())).toEqual([hub]);
    expect(captured(await mem.effectiveTopM(probes, 9))).toBe(0);
    mem.clearHubFlags();
    expect(captured(await mem.effectiveTopM(probes, 9))).toBe(40);
  });
});

describe('MemQAgent passes its trust options to its memory', () => {
  it('at construction and after load', async () => {
    const fs = await import('fs');
    const os = await import('os');
    const path = await import('path');
    const { MemQAgent, MEMQ_DEFAULTS } = await import('../../lib/agent/memq');
    const { HashingEncoder } = await import('../../lib/encoders/hashing');
    const { UniformPrior } = await import('../../lib/llm/prior');
    const mk = () =>
      new MemQAgent({ ...MEMQ_DEFAULTS, encoder: new HashingEncoder({ dim: 16 }), prior: new UniformPrior(), seed: 1, trust: { valueRange: { min: 0, max: 1 } } });
    const a = mk();
    expect(a.memory.trust?.valueRange).toEqual({ min: 0, max: 1 });
    await a.memory.write([{ key: new Float32Array(16).fill(0.1), value: 7, source: 'train' }]);
    expect(a.memory.getCase(0)!.value).toBe(1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-trust-agent-'));
    await a.save(dir);
    const b = mk();
    await b.load(dir);
    expect(b.memory.trust?.valueRange).toEqual({ min: 0, max: 1 });
    expect(b.memory.size).toBe(1);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('trusted reads refuse bad arguments', () => {
  it('queries, voidWeight, voidValue, m', async () => {
    const mem = new EpisodicMemory({ dim: 2, backend: 'js', trust: {} });
    await mem.write([{ key: [0, 0], value: 1, source: 'self' }]);
    await expect(mem.estimate(new Float32Array(3), 1)).rejects.toThrow(TypeError);
    await expect(mem.estimate([0, 0] as any, 1)).rejects.toThrow(TypeError);
    await expect(mem.estimate(new Float32Array(2), 1, { voidWeight: -1 })).rejects.toThrow(/voidWeight/);
    await expect(mem.estimate(new Float32Array(2), 1, { voidWeight: 0.1, voidValue: NaN })).rejects.toThrow(/voidValue/);
    await expect(mem.retrievalPrior(new Float32Array(2), 1, Infinity)).rejects.toThrow(/voidWeight/);
    await expect(mem.search(new Float32Array(2), 0)).rejects.toThrow(RangeError);
    expect(() => mem.search(new Float32Array(3), 1)).toThrow(TypeError);
  });
});

describe('run config: memq.trust', () => {
  it('null by default; an object is checked and reaches the agent memory', async () => {
    const { defaultConfig, mergeConfig, validateConfig, makeAgent, ConfigError } = await import('../../lib/agent/config');
    const { envNames } = await import('../../lib/envs/registry');
    expect(defaultConfig().memq.trust).toBeNull();
    const cfg = validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld', memq: { trust: { maxSourceShare: 0.5, valueRange: { min: 0, max: 1 } } } }), envNames());
    const agent = makeAgent(cfg) as any;
    expect(agent.memory.trust.maxSourceShare).toBe(0.5);
    expect(makeAgent(validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld' }), envNames())) .memorySize()).toBe(0);
    expect(() => validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld', memq: { trust: { maxSourceShare: 2 } } }), envNames())).toThrow(ConfigError);
    expect(() => validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld', memq: { trust: { maxSourceShare: 2 } } }), envNames())).toThrow(/memq.trust: trust.maxSourceShare must be in \(0, 1\]/);
  });
});
