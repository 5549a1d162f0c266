/**
 * Trust in episodic memory (docs/trust.md): provenance levels, per-source and per-case caps on
 * the share of kernel mass, value clipping to the environment's return range, quarantine of
 * untrusted records and hub detection. Everything here is pure (no memory is touched): the
 * memory (lib/memory/episodic.ts) calls these on top of its search results.
 */

export type TrustLevel = 'trusted' | 'untrusted';

/** Quarantine release rule: ≥ k self cases within radius r whose values lie within δ. */
export interface QuarantineRule {
  /** Self cases that must agree (integer ≥ 1). */
  k: number;
  /** Euclidean radius r around the record's key. */
  radius: number;
  /** |q_self − q_record| ≤ δ counts as agreeing. */
  delta: number;
}

/** Hub rule: flag cases retrieved far more often than their neighbourhood. */
export interface HubRule {
  /** Reads (queries) counted before each detection (integer ≥ 1). */
  window: number;
  /** Neighbours L whose counts give the expected count (integer ≥ 1). */
  neighbours: number;
  /** Flag when count > ratio · (median of the neighbours' counts + 1). */
  ratio: number;
  /** And count ≥ minCount. */
  minCount: number;
}

export interface TrustOptions {
  /**
   * Trust level per source: an exact source name, or a prefix ending in '*' ('import:*').
   * Exact names win over prefixes, longer prefixes over shorter. Merged over the defaults
   * (DEFAULT_TRUST_LEVELS).
   */
  levels?: Record<string, TrustLevel>;
  /** Level of a source no entry matches (default 'untrusted'). */
  defaultLevel?: TrustLevel;
  /** The agent's own outcomes (quarantine agreement, learned value range): default ['self', 'train']. */
  selfSources?: string[];
  /** Cap on the share of kernel mass (void included) one source may carry, in (0, 1]; default 1 (no cap). */
  maxSourceShare?: number;
  /** Cap on the share of kernel mass one case may carry, in (0, 1]; default 1 (no cap). */
  maxCaseShare?: number;
  /**
   * Values are clipped into this range at reads (and at writes when declared): a declared
   * { min, max } (e.g. household returns in [0, 1]), 'learned' (running min / max of the
   * self-sourced values, widened by learnedMargin·(max − min)), or 'none' (default).
   */
  valueRange?: { min: number; max: number } | 'learned' | 'none';
  /** Margin of the learned range, as a fraction of its width (default 0.1). */
  learnedMargin?: number;
  /** Quarantine of untrusted records (default { k: 2, radius: 0.5, delta: 0.25 }); false: untrusted records are read like trusted ones. */
  quarantine?: QuarantineRule | false;
  /** Hub detection (default off). */
  hubs?: HubRule | false;
  /**
   * Authenticated provenance (default off): a write claiming a trusted source must carry the
   * MAC of the writer key (lib/memory/provenance.ts, `signWrite`); without a valid one its
   * trusted sources are stored as `unverified:<source>`, which is untrusted. true: the key is
   * MEMQ_MEMORY_KEY; or the key itself (a string or bytes, at least 16 bytes). In a run
   * config only true/false (a key never goes into config.json).
   */
  authenticate?: boolean | string | Uint8Array;
}

export const DEFAULT_TRUST_LEVELS: Readonly<Record<string, TrustLevel>> = Object.freeze({
  '': 'trusted',
  self: 'trusted',
  train: 'trusted',
  demo: 'trusted',
  'import:*': 'untrusted',
  'unverified:*': 'untrusted',
});

export const DEFAULT_QUARANTINE: Readonly<QuarantineRule> = Object.freeze({ k: 2, radius: 0.5, delta: 0.25 });
export const DEFAULT_HUBS: Readonly<HubRule> = Object.freeze({ window: 2000, neighbours: 32, ratio: 4, minCount: 20 });

/** A checked, normalised trust policy. */
export interface TrustPolicy {
  levels: Record<string, TrustLevel>;
  defaultLevel: TrustLevel;
  selfSources: string[];
  maxSourceShare: number;
  maxCaseShare: number;
  valueRange: { min: number; max: number } | 'learned' | 'none';
  learnedMargin: number;
  quarantine: QuarantineRule | false;
  hubs: HubRule | false;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Check trust options (TypeError for a wrong type, RangeError for a bad value, naming the field). */
export function makeTrustPolicy(o: TrustOptions = {}): TrustPolicy {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new TypeError(`trust must be an object of trust options, got ${typeName(o)}`);
  const known = ['levels', 'defaultLevel', 'selfSources', 'maxSourceShare', 'maxCaseShare', 'valueRange', 'learnedMargin', 'quarantine', 'hubs', 'authenticate'];
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new TypeError(`trust: unknown option '${k}' (known: ${known.join(', ')})`);
  const level = (name: string, v: unknown): TrustLevel => {
    if (v !== 'trusted' && v !== 'untrusted') throw new RangeError(`${name} must be 'trusted' or 'untrusted', got ${JSON.stringify(v)}`);
    return v;
  };
  const levels: Record<string, TrustLevel> = { ...DEFAULT_TRUST_LEVELS };
  if (o.levels !== undefined) {
    if (typeof o.levels !== 'object' || o.levels === null || Array.isArray(o.levels)) throw new TypeError(`trust.levels must be an object { source: 'trusted' | 'untrusted' }, got ${typeName(o.levels)}`);
    for (const [k, v] of Object.entries(o.levels)) levels[k] = level(`trust.levels[${JSON.stringify(k)}]`, v);
  }
  const share = (name: string, v: unknown): number => {
    if (v === undefined) return 1;
    if (typeof v !== 'number') throw new TypeError(`trust.${name} must be a number in (0, 1], got ${typeName(v)}`);
    if (!(v > 0 && v <= 1)) throw new RangeError(`trust.${name} must be in (0, 1], got ${v}`);
    return v;
  };
  let valueRange: TrustPolicy['valueRange'] = 'none';
  const vr = o.valueRange;
  if (vr === 'learned' || vr === 'none') valueRange = vr;
  else if (vr !== undefined) {
    if (typeof vr !== 'object' || vr === null || typeof vr.min !== 'number' || typeof vr.max !== 'number') {
      throw new TypeError(`trust.valueRange must be { min, max }, 'learned' or 'none', got ${JSON.stringify(vr)}`);
    }
    if (!(Number.isFinite(vr.min) && Number.isFinite(vr.max) && vr.min <= vr.max)) throw new RangeError(`trust.valueRange must have finite min <= max, got [${vr.min}, ${vr.max}]`);
    valueRange = { min: vr.min, max: vr.max };
  }
  const margin = o.learnedMargin ?? 0.1;
  if (typeof margin !== 'number' || !(margin >= 0 && Number.isFinite(margin))) throw new RangeError(`trust.learnedMargin must be a finite number >= 0, got ${margin}`);
  const posInt = (name: string, v: unknown) => {
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= 1)) throw new RangeError(`${name} must be an integer >= 1, got ${JSON.stringify(v)}`);
  };
  const posNum = (name: string, v: unknown, allowZero = true) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && (allowZero ? v >= 0 : v > 0))) throw new RangeError(`${name} must be a finite number ${allowZero ? '>=' : '>'} 0, got ${JSON.stringify(v)}`);
  };
  let quarantine: TrustPolicy['quarantine'] = { ...DEFAULT_QUARANTINE };
  if (o.quarantine === false) quarantine = false;
  else if (o.quarantine !== undefined) {
    if (typeof o.quarantine !== 'object' || o.quarantine === null) throw new TypeError(`trust.quarantine must be { k, radius, delta } or false, got ${typeName(o.quarantine)}`);
    quarantine = { ...DEFAULT_QUARANTINE, ...o.quarantine };
    posInt('trust.quarantine.k', quarantine.k);
    posNum('trust.quarantine.radius', quarantine.radius);
    posNum('trust.quarantine.delta', quarantine.delta);
  }
  let hubs: TrustPolicy['hubs'] = false;
  if (o.hubs !== undefined && o.hubs !== false) {
    if (typeof o.hubs !== 'object' || o.hubs === null) throw new TypeError(`trust.hubs must be { window, neighbours, ratio, minCount } or false, got ${typeName(o.hubs)}`);
    hubs = { ...DEFAULT_HUBS, ...o.hubs };
    posInt('trust.hubs.window', hubs.window);
    posInt('trust.hubs.neighbours', hubs.neighbours);
    posNum('trust.hubs.ratio', hubs.ratio, false);
    posNum('trust.hubs.minCount', hubs.minCount);
  }
  // authenticate's type only: the key is resolved by the memory (writerKeyOf) and never kept in the policy
  const auth = o.authenticate;
  if (auth !== undefined && typeof auth !== 'boolean' && typeof auth !== 'string' && !(auth instanceof Uint8Array)) {
    throw new TypeError(`trust.authenticate must be true, false, a key string or a Uint8Array, got ${typeName(auth)}`);
  }
  const selfSources = o.selfSources ?? ['self', 'train'];
  if (!Array.isArray(selfSources) || selfSources.some((s) => typeof s !== 'string')) throw new TypeError('trust.selfSources must be an array of source names');
  return {
    levels,
    defaultLevel: o.defaultLevel === undefined ? 'untrusted' : level('trust.defaultLevel', o.defaultLevel),
    selfSources: [...selfSources],
    maxSourceShare: share('maxSourceShare', o.maxSourceShare),
    maxCaseShare: share('maxCaseShare', o.maxCaseShare),
    valueRange,
    learnedMargin: margin,
    quarantine,
    hubs,
  };
}

/** The level of a source: exact entry, else the longest matching 'prefix*' entry, else the default. */
export function trustLevelOf(policy: TrustPolicy, source: string): TrustLevel {
  const exact = policy.levels[source];
  if (exact !== undefined && !source.endsWith('*')) return exact;
  let best: string | undefined;
  for (const k of Object.keys(policy.levels)) {
    if (!k.endsWith('*')) continue;
    const prefix = k.slice(0, -1);
    if (source.startsWith(prefix) && (best === undefined || prefix.length > best.length - 1)) best = k;
  }
  return best !== undefined ? policy.levels[best] : policy.defaultLevel;
}

/**
 * Water-filling cap on group shares. Groups g carry masses K_g = Σ_{i∈g} w_i; with the void
 * mass κ∅ (never capped) the share of g is K_g / (Σ_g' K_g' + κ∅). The capped masses are
 * K'_g = min(K_g, τ), with τ the largest root of τ = c·(Σ_g min(K_g, τ) + κ∅): every group
 * over the cap ends with share exactly c, the others keep their mass. Each weight of a capped
 * group is scaled by K'_g / K_g. When no positive τ exists (κ∅ = 0 and c·G ≤ 1: the shares
 * cannot all stay ≤ c), every group gets the smallest group's mass: equal shares, the limit as
 * κ∅ → 0. Returns new weights (float64); w is not changed.
 */
export function capGroupShares(w: ArrayLike<number>, group: ArrayLike<number>, cap: number, voidWeight: number): Float64Array {
  const n = w.length;
  const out = Float64Array.from(w);
  if (cap >= 1 || n === 0) return out;
  const mass = new Map<number, number>();
  for (let i = 0; i < n; i++) mass.set(group[i], (mass.get(group[i]) ?? 0) + w[i]);
  const masses = [...mass.values()].sort((a, b) => b - a);
  const G = masses.length;
  // R_j = Σ_{i ≥ j} K_(i), summed from the smallest (no cancellation; R_G = 0 exactly).
  const suffix = new Float64Array(G + 1);
  for (let j = G - 1; j >= 0; j--) suffix[j] = suffix[j + 1] + masses[j];
  let tau = NaN;
  // j groups capped (the j largest): τ = c (R_j + κ∅) / (1 − c j), valid when K_(j) ≥ τ ≥ K_(j+1).
  for (let j = 0; j <= G; j++) {
    const denom = 1 - cap * j;
    if (!(denom > 0)) break;
    const t = (cap * (suffix[j] + voidWeight)) / denom;
    const upper = j === 0 ? Infinity : masses[j - 1];
    const lower = j < G ? masses[j] : 0;
    if (t <= upper && t >= lower && t > 0) {
      tau = t;
      break;
    }
  }
  if (Number.isNaN(tau)) tau = masses[G - 1];
  for (let i = 0; i < n; i++) {
    const K = mass.get(group[i])!;
    if (K > tau && K > 0) out[i] = w[i] * (tau / K);
  }
  return out;
}

/**
 * Both caps: the case cap (each case its own group) and the source cap, alternated until
 * neither changes a weight by more than 1e-12 relative (each pass only lowers weights, so the
 * alternation converges to weights that meet both; at most 200 rounds).
 */
export function capShares(kernel: ArrayLike<number>, source: ArrayLike<number>, caseCap: number, sourceCap: number, voidWeight: number): Float64Array {
  let w: Float64Array = Float64Array.from(kernel);
  const self = Int32Array.from({ length: w.length }, (_, i) => i);
  for (let round = 0; round < 200; round++) {
    const a = capGroupShares(w, self, caseCap, voidWeight);
    const b = capGroupShares(a, source, sourceCap, voidWeight);
    let change = 0;
    for (let i = 0; i < w.length; i++) change = Math.max(change, Math.abs(b[i] - w[i]) / Math.max(1e-300, w[i]));
    w = b;
    if (change <= 1e-12) break;
  }
  return w;
}

/** Clip v into [lo, hi]. */
export function clip(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

/** The learned value range: [min − m·(max − min), max + m·(max − min)] of the given values (undefined when empty). */
export function learnedRange(values: Iterable<number>, margin: number): { min: number; max: number } | undefined {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(lo <= hi)) return undefined;
  const w = (hi - lo) * margin;
  return { min: lo - w, max: hi + w };
}

/**
 * Q̂ and λ (MATH §3) of one query from its top-M (ids ≥ 0), kernel values and held values,
 * with the caps applied to the kernel weights (capShares) first.
 */
export function cappedEstimate(
  kernel: ArrayLike<number>,
  values: ArrayLike<number>,
  source: ArrayLike<number>,
  caseCap: number,
  sourceCap: number,
  voidWeight: number,
  voidValue: number,
): { value: number; confidence: number; weights: Float64Array } {
  const w = capShares(kernel, source, caseCap, sourceCap, voidWeight);
  let num = voidWeight * voidValue;
  let den = voidWeight;
  let mem = 0;
  for (let i = 0; i < w.length; i++) {
    num += w[i] * values[i];
    den += w[i];
    mem += w[i];
  }
  if (!(den > 0)) return { value: voidValue, confidence: 0, weights: w };
  return { value: num / den, confidence: mem / den, weights: w };
}

/**
 * The quarantine rule for one record: how many self cases (keys selfKeys, values selfValues,
 * given as the candidates near the record) lie within radius r of its key with |q − q_rec| ≤ δ;
 * released when that count ≥ k.
 */
export function agreeingCount(
  recordKey: ArrayLike<number>,
  recordValue: number,
  candKeys: ArrayLike<number>,
  candValues: ArrayLike<number>,
  dim: number,
  rule: QuarantineRule,
): number {
  const n = candValues.length;
  let count = 0;
  for (let i = 0; i < n; i++) {
    let d2 = 0;
    for (let t = 0; t < dim; t++) {
      const x = candKeys[i * dim + t] - recordKey[t];
      d2 += x * x;
    }
    if (Math.sqrt(d2) <= rule.radius && Math.abs(candValues[i] - recordValue) <= rule.delta) count++;
  }
  return count;
}

/** Median of a list (mean of the two middle values for an even length; 0 when empty). */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * Hub flags: case c (with count n_c ≥ minCount) is flagged when n_c > ratio · (median of the
 * counts of its L nearest other cases + 1). `neighbours(c)` gives those ids.
 */
export function detectHubs(counts: Map<number, number>, neighbours: (id: number) => number[], rule: HubRule): { id: number; count: number; expected: number }[] {
  const flagged: { id: number; count: number; expected: number }[] = [];
  for (const [id, n] of counts) {
    if (n < rule.minCount) continue;
    const med = median(neighbours(id).map((j) => counts.get(j) ?? 0));
    if (n > rule.ratio * (med + 1)) flagged.push({ id, count: n, expected: med });
  }
  return flagged.sort((a, b) => a.id - b.id);
}
