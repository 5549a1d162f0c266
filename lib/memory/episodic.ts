/**
 * EpisodicMemory: cases (MATH §1) over a MemoryIndex, with the write policies of §8 and the
 * reads of §3–§4. Each write batch costs at most one search (merge candidates), one
 * updateValues, one remove and one add on the index: never a native call per case.
 */
import { loadNative } from '../native';
import { MemoryIndex } from '../retrieval';
import { chooseBandwidth, type BandwidthRule } from '../policy/bandwidth';
import type { KernelSettings } from '../policy/kernels';
import { parzenPrior, type ParzenPrior } from '../policy/parzen';
import { Mulberry32 as Rng } from '../policy/rng';
import type { IndexLike, IndexSearchResult } from './indexLike';
import { ReferenceIndex } from './referenceIndex';
import type { CaseInput, CaseMeta, EpisodicMemoryOptions, MergeRule, WritePolicy, WriteReport } from './types';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { leBytes } from './fsutil';
import {
  currentGeneration,
  generationName,
  journalName,
  readSnapshot,
  resolveKey,
  SnapshotError,
  writeSnapshot,
  type SaveOptions,
  type SnapshotData,
} from './snapshot';
import { JournalWriter, readJournal, type JournalRecord } from './journal';
import {
  cappedEstimate,
  clip,
  detectHubs,
  learnedRange,
  makeTrustPolicy,
  trustLevelOf,
  type TrustLevel,
  type TrustOptions,
  type TrustPolicy,
} from './trust';
import {
  caseMetaProblem,
  finiteFloat32,
  keyRowProblem,
  MAX_ID,
  snapshotRowProblem,
  validateBatch,
  type ValidBatch,
  type ValidCase,
} from './validate';

export interface LoadOptions {
  /** Index backend for the loaded memory (default 'auto'). */
  backend?: 'native' | 'js' | 'auto';
  /** Replay the journal written after the snapshot (default true). */
  replayJournal?: boolean;
  /** Keep journalling subsequent writes into dir (default false). */
  attachJournal?: boolean;
  /** fsync each journal record (default true). */
  fsync?: boolean;
  /**
   * Verify the snapshot's HMAC-SHA-256 signature with this key (default: MEMQ_MEMORY_KEY when
   * set); with a key, an unsigned, foreign-signed or tampered snapshot is refused, naming the part.
   */
  key?: string | Uint8Array;
  /**
   * Load an unsigned or foreign snapshot anyway, as untrusted: every case's source becomes this
   * (e.g. 'import:vendor'), which the trust policy must rate untrusted. The signature is not checked.
   */
  untrustedSource?: string;
  /** Trust policy of the loaded memory (see EpisodicMemoryOptions.trust). */
  trust?: TrustOptions;
}

export interface ImportOptions {
  /** Source recorded on every imported case, e.g. 'import:vendor' (required). */
  source: string;
  /**
   * Key to verify the snapshot with (default MEMQ_MEMORY_KEY). Only a snapshot whose signature
   * verifies may be imported under a trusted source; anything else only under an untrusted one.
   */
  key?: string | Uint8Array;
}

export interface LoadReport {
  generation: number;
  journalRecords: number;
  /** Bytes of a torn journal tail that were ignored (a crash mid-record). */
  journalTornBytes: number;
}

export function createIndex(dim: number, kernel: KernelSettings, backend: 'native' | 'js' | 'auto' = 'auto'): { index: IndexLike; backend: 'native' | 'js' } {
  if (backend === 'js') return { index: new ReferenceIndex({ dim, ...kernel }), backend: 'js' };
  // 'auto' falls back to the JS index only when the addon itself cannot be loaded; any other
  // error (bad arguments, MEMQ_BACKEND naming an unusable backend) reaches the caller.
  let loadError: unknown;
  try {
    loadNative();
  } catch (err) {
    loadError = err;
  }
  if (loadError !== undefined) {
    if (backend === 'native') throw loadError;
    return { index: new ReferenceIndex({ dim, ...kernel }), backend: 'js' };
  }
  return { index: new MemoryIndex({ dim, ...(kernel as any) }) as unknown as IndexLike, backend: 'native' };
}

/** Whether the native addon loads here. */
export function nativeAvailable(): boolean {
  try {
    new MemoryIndex({ dim: 1 });
    return true;
  } catch {
    return false;
  }
}

function checkPolicy(p: WritePolicy): WritePolicy {
  const posInt = (name: string, v: number) => {
    if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`write policy ${p.kind}: ${name} must be an integer >= 1, got ${v}`);
  };
  if (p.kind === 'replay' || p.kind === 'importance') posInt('capacity', p.capacity);
  else if (p.kind === 'window') posInt('size', p.size);
  else if (p.kind !== 'unbounded') throw new RangeError(`unknown write policy ${JSON.stringify(p)}`);
  if (p.kind === 'importance' && !['tdError', 'visits', 'return'].includes(p.weightBy)) {
    throw new RangeError(`importance weightBy must be 'tdError', 'visits' or 'return', got ${JSON.stringify(p.weightBy)}`);
  }
  return p;
}

function checkMerge(m: MergeRule | undefined): MergeRule | undefined {
  if (!m) return undefined;
  if (!(m.epsilon >= 0)) throw new RangeError(`merge epsilon must be >= 0, got ${m.epsilon}`);
  const r = m.rate;
  const ok =
    r === 'average' ||
    (typeof r === 'number' && r > 0 && r <= 1) ||
    (typeof r === 'object' && r !== null && typeof r.power === 'number' && r.power > 0 && r.power <= 1);
  if (!ok) throw new RangeError(`merge rate must be in (0, 1], 'average' or { power: p } with p in (0, 1], got ${JSON.stringify(r)}`);
  return m;
}

export class EpisodicMemory {
  readonly dim: number;
  readonly policy: WritePolicy;
  readonly merge: MergeRule | undefined;
  readonly backend: 'native' | 'js';
  /** @internal */ index: IndexLike;
  /** @internal id → metadata, in insertion order (Map order). */ meta = new Map<number, CaseMeta>();
  /** @internal */ values = new Map<number, number>();
  /** @internal */ seqCounter = 0;
  /** @internal */ clock = 0;
  private readonly rng: Rng;
  /**
   * Called after every applied change (write, remove, setWeights, setKernel), once the index,
   * the journal and the JS state all hold it. An exception thrown here reaches the caller, but
   * the change stays applied.
   */
  onWrite?: (change: MemoryChange) => void;
  /** Bumped by every synchronous change, so that a write whose search awaited sees a stale plan. */
  private epoch = 0;
  /** Set when a failed change could not be rolled back: the copies may disagree from then on. */
  private inconsistent?: Error;
  /** The trust policy (undefined: none; reads take the native fast path). */
  private trustPolicy?: TrustPolicy;
  /** Hub-flagged cases (quarantined until clearHubFlags). */
  private hubFlags = new Set<number>();
  /** Retrievals per case over the current hub window, and the queries counted so far. */
  private hubCounts = new Map<number, number>();
  private hubQueries = 0;
  /** Quarantine and learned range, recomputed when the memory changed (epoch). */
  private trustCache?: { epoch: number; quarantined: Set<number>; range?: { min: number; max: number } };

  constructor(options: EpisodicMemoryOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('EpisodicMemory: options must be an object { dim, ... }');
    if (typeof options.dim !== 'number') throw new TypeError(`dim must be an integer >= 1, got ${options.dim === null ? 'null' : typeof options.dim}`);
    if (!(Number.isInteger(options.dim) && options.dim >= 1)) throw new RangeError(`dim must be an integer >= 1, got ${options.dim}`);
    const be = options.backend;
    if (be !== undefined && be !== 'native' && be !== 'js' && be !== 'auto') {
      throw new TypeError(`backend must be 'native', 'js' or 'auto', got ${typeof be === 'string' ? JSON.stringify(be) : typeof be}`);
    }
    this.dim = options.dim;
    this.policy = checkPolicy(options.policy ?? { kind: 'unbounded' });
    this.merge = checkMerge(options.merge);
    const made = createIndex(options.dim, options.kernel ?? { kernel: 'gaussian', bandwidth: 1 }, options.backend ?? 'auto');
    this.index = made.index;
    this.backend = made.backend;
    this.rng = new Rng(this.policy.kind === 'importance' ? this.policy.seed ?? 1 : 1);
    if (options.trust !== undefined) this.trustPolicy = makeTrustPolicy(options.trust);
  }

  // ---------- trust (docs/trust.md) ----------

  /** The active trust policy (normalised), or undefined. */
  get trust(): TrustPolicy | undefined {
    return this.trustPolicy;
  }

  /** Set or clear (undefined) the trust policy; hub flags and counts are kept unless cleared. */
  setTrust(options: TrustOptions | undefined): void {
    this.trustPolicy = options === undefined ? undefined : makeTrustPolicy(options);
    this.trustCache = undefined;
  }

  /** Trust level of a source under the active policy (the default policy when none is set). */
  trustLevel(source: string): TrustLevel {
    return trustLevelOf(this.trustPolicy ?? defaultPolicy(), source);
  }

  /** Ids hidden from reads: untrusted records not yet released, and hub-flagged cases. */
  async quarantined(): Promise<Int32Array> {
    const st = await this.trustState();
    return Int32Array.from([...st.quarantined].sort((a, b) => a - b));
  }

  /** Hub-flagged ids. */
  hubFlagged(): Int32Array {
    return Int32Array.from([...this.hubFlags].sort((a, b) => a - b));
  }

  clearHubFlags(): void {
    this.hubFlags.clear();
    this.hubCounts.clear();
    this.hubQueries = 0;
    this.trustCache = undefined;
  }

  /** The value range reads clip into, or undefined (none declared, nothing learned yet). */
  async valueRange(): Promise<{ min: number; max: number } | undefined> {
    return (await this.trustState()).range;
  }

  private isSelf(source: string): boolean {
    return this.trustPolicy!.selfSources.includes(source);
  }

  /**
   * Quarantine (untrusted records the rule has not released, plus hub flags) and the value
   * range, for the current contents. Release rule: at least k self cases within Euclidean
   * distance r of the record's key whose values are within δ of its value (the candidates come
   * from one batched search, widened ×4 while the farthest candidate is still within r).
   */
  private async trustState(): Promise<{ quarantined: Set<number>; range?: { min: number; max: number } }> {
    const pol = this.trustPolicy;
    if (!pol) return { quarantined: new Set() };
    if (this.trustCache && this.trustCache.epoch === this.epoch) return this.trustCache;
    const epoch = this.epoch;
    const quarantined = new Set<number>();
    const untrusted: number[] = [];
    const selfValues: number[] = [];
    for (const [id, m] of this.meta) {
      if (trustLevelOf(pol, m.source) === 'untrusted') untrusted.push(id);
      if (pol.selfSources.includes(m.source)) selfValues.push(this.values.get(id)!);
    }
    const rule = pol.quarantine;
    if (rule && untrusted.length) {
      const ids = Int32Array.from(untrusted);
      const keys = this.getKeys(ids);
      const r2 = rule.radius * rule.radius;
      const size = this.index.size;
      const width = Math.min(size, Math.max(4 * rule.k, 32) + untrusted.length);
      await this.widenedSearch(keys, Array.from(ids.keys()), width, (i, hits, off, w, canWiden) => {
        const v = this.values.get(ids[i])!;
        let agree = 0;
        let lastWithin = true;
        for (let j = 0; j < w; j++) {
          const id = hits.ids[off + j];
          if (id < 0) {
            lastWithin = false;
            break;
          }
          const d2 = hits.dist2[off + j];
          lastWithin = d2 <= r2;
          const m = this.meta.get(id);
          if (d2 <= r2 && m && pol.selfSources.includes(m.source) && Math.abs(this.values.get(id)! - v) <= rule.delta) agree++;
        }
        if (agree >= rule.k) return false;
        if (lastWithin && canWiden) return true;
        quarantined.add(ids[i]);
        return false;
      });
    }
    for (const id of this.hubFlags) if (this.meta.has(id)) quarantined.add(id);
    const range = pol.valueRange === 'none' ? undefined : pol.valueRange === 'learned' ? learnedRange(selfValues, pol.learnedMargin) : pol.valueRange;
    const st = { epoch, quarantined, range };
    if (epoch === this.epoch) this.trustCache = st;
    return st;
  }

  /**
   * Top-m per query with the quarantined cases left out (one search of m + |quarantine|, so
   * exactly m survive when the memory holds them), −1 padded like the index's.
   */
  private async trustedHits(queries: Float32Array, m: number, sync: boolean) {
    if (typeof m !== 'number' || !Number.isInteger(m) || m < 1) throw new RangeError(`m must be an integer >= 1, got ${m}`);
    const st = await this.trustState();
    const b = queries.length / this.dim;
    const wide = Math.max(1, Math.min(this.index.size, m + st.quarantined.size));
    const raw = sync ? this.index.searchSync(queries, wide) : await this.index.search(queries, wide);
    const ids = new Int32Array(b * m).fill(-1);
    const kernel = new Float32Array(b * m);
    const dist2 = new Float32Array(b * m).fill(Infinity);
    for (let q = 0; q < b; q++) {
      let o = 0;
      for (let j = 0; j < wide && o < m; j++) {
        const id = raw.ids[q * wide + j];
        if (id < 0 || st.quarantined.has(id)) continue;
        ids[q * m + o] = id;
        kernel[q * m + o] = raw.kernel[q * wide + j];
        dist2[q * m + o] = raw.dist2[q * wide + j];
        o++;
      }
    }
    return { hits: { ids, kernel, dist2 }, range: st.range };
  }

  /** Per query: capped weights of its surviving top-m (ids, float64 weights, clipped values). */
  private async trustedRows(queries: Float32Array, m: number, sync: boolean, count = true) {
    const pol = this.trustPolicy!;
    const { hits, range } = await this.trustedHits(queries, m, sync);
    const b = queries.length / this.dim;
    const sourceIdx = new Map<string, number>();
    const rows: { ids: number[]; kernel: number[]; values: number[]; sources: number[] }[] = [];
    for (let q = 0; q < b; q++) {
      const row = { ids: [] as number[], kernel: [] as number[], values: [] as number[], sources: [] as number[] };
      for (let j = 0; j < m; j++) {
        const id = hits.ids[q * m + j];
        if (id < 0) continue;
        const meta = this.meta.get(id)!;
        let v = this.values.get(id)!;
        if (range) v = clip(v, range.min, range.max);
        let si = sourceIdx.get(meta.source);
        if (si === undefined) sourceIdx.set(meta.source, (si = sourceIdx.size));
        row.ids.push(id);
        row.kernel.push(hits.kernel[q * m + j]);
        row.values.push(v);
        row.sources.push(si);
      }
      rows.push(row);
    }
    if (count && pol.hubs) await this.countRetrievals(rows.map((r) => r.ids));
    return rows;
  }

  private async trustedEstimate(queries: Float32Array, m: number, opts: { voidWeight?: number; voidValue?: number } | undefined, sync: boolean) {
    checkQueries(queries, this.dim, 'estimate');
    const pol = this.trustPolicy!;
    const vw = opts?.voidWeight ?? 0;
    const vv = opts?.voidValue ?? 0;
    if (typeof vw !== 'number' || !(vw >= 0) || !Number.isFinite(vw)) throw new RangeError(`estimate: voidWeight must be a finite number >= 0, got ${vw}`);
    if (typeof vv !== 'number' || !Number.isFinite(vv)) throw new RangeError(`estimate: voidValue must be a finite number, got ${vv}`);
    const rows = await this.trustedRows(queries, m, sync);
    const value = new Float32Array(rows.length);
    const confidence = new Float32Array(rows.length);
    rows.forEach((r, q) => {
      const e = cappedEstimate(r.kernel, r.values, r.sources, pol.maxCaseShare, pol.maxSourceShare, vw, vv);
      value[q] = e.value;
      confidence[q] = e.confidence;
    });
    return { value, confidence };
  }

  /** Count retrievals for hub detection; when the window is full, detect and reset. */
  private async countRetrievals(rows: number[][]): Promise<void> {
    const rule = this.trustPolicy!.hubs;
    if (!rule) return;
    for (const r of rows) {
      for (const id of r) this.hubCounts.set(id, (this.hubCounts.get(id) ?? 0) + 1);
      this.hubQueries++;
    }
    if (this.hubQueries >= rule.window) {
      const counts = this.hubCounts;
      this.hubCounts = new Map();
      this.hubQueries = 0;
      await this.flagHubs(counts);
    }
  }

  /**
   * Hub detection over given retrieval counts (trust.detectHubs): a case's neighbourhood is its
   * L nearest other cases by key. Flagged cases join the quarantine. Returns the new flags.
   */
  private async flagHubs(counts: Map<number, number>): Promise<{ id: number; count: number; expected: number }[]> {
    const rule = this.trustPolicy!.hubs;
    if (!rule) return [];
    const cand = [...counts].filter(([id, n]) => n >= rule.minCount && this.meta.has(id)).map(([id]) => id);
    if (cand.length === 0) return [];
    const ids = Int32Array.from(cand);
    // Neighbours are the L nearest other cases that reads can return: quarantined ones (never
    // retrieved, count 0) would drag the median down and flag their neighbours.
    const hidden = (await this.trustState()).quarantined;
    const L = Math.min(rule.neighbours + 1 + hidden.size, this.index.size);
    const hits = await this.index.search(this.getKeys(ids), L);
    const nb = new Map<number, number[]>();
    cand.forEach((id, r) => {
      const list: number[] = [];
      for (let j = 0; j < L && list.length < rule.neighbours; j++) {
        const o = hits.ids[r * L + j];
        if (o >= 0 && o !== id && !hidden.has(o)) list.push(o);
      }
      nb.set(id, list);
    });
    const flagged = detectHubs(counts, (id) => nb.get(id) ?? [], rule).filter((f) => nb.has(f.id));
    for (const f of flagged) this.hubFlags.add(f.id);
    if (flagged.length) this.trustCache = undefined;
    return flagged;
  }

  /**
   * Audit for hubs with probe queries (e.g. the keys of the agent's own recent cases, which
   * follow its state distribution): counts each case's appearances in the probes' top-m (after
   * quarantine) and flags hubs at once. Needs a trust policy with hubs set.
   */
  async auditHubs(probes: Float32Array, m: number): Promise<{ id: number; count: number; expected: number }[]> {
    if (!this.trustPolicy?.hubs) throw new RangeError('auditHubs: the trust policy has no hub rule (set trust.hubs)');
    checkQueries(probes, this.dim, 'auditHubs');
    if (!(Number.isInteger(m) && m >= 1)) throw new RangeError(`auditHubs: m must be an integer >= 1, got ${m}`);
    if (this.size === 0 || probes.length === 0) return [];
    const rows = await this.trustedRows(probes, m, false, false);
    const counts = new Map<number, number>();
    for (const r of rows) for (const id of r.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    return this.flagHubs(counts);
  }

  /** The effective top-m ids per query (quarantine applied), without counting them for hubs. */
  async effectiveTopM(queries: Float32Array, m: number): Promise<Int32Array> {
    checkQueries(queries, this.dim, 'effectiveTopM');
    if (!this.trustPolicy) return (await this.index.search(queries, m)).ids;
    return (await this.trustedHits(queries, m, false)).hits.ids;
  }

  get size(): number {
    return this.meta.size;
  }

  get kernel(): KernelSettings {
    return this.index.kernel;
  }

  get capacity(): number {
    const p = this.policy;
    return p.kind === 'replay' || p.kind === 'importance' ? p.capacity : p.kind === 'window' ? p.size : Infinity;
  }

  /** Live ids in insertion order. */
  ids(): Int32Array {
    return Int32Array.from(this.meta.keys());
  }

  getCase(id: number): (CaseMeta & { id: number; value: number; trust: TrustLevel }) | undefined {
    const m = this.meta.get(id);
    return m ? { ...m, id, value: this.values.get(id)!, trust: this.trustLevel(m.source) } : undefined;
  }

  getKeys(ids: Int32Array): Float32Array {
    return ids.length ? this.index.getKeys(ids) : new Float32Array(0);
  }

  private weightOf(visits: number, value: number, tdError: number): number {
    const p = this.policy;
    if (p.kind !== 'importance') return 1;
    return p.weightBy === 'visits' ? visits : p.weightBy === 'return' ? value : Math.abs(tdError);
  }

  private mergeRate(visitsAfter: number): number {
    const r = this.merge!.rate;
    if (r === 'average') return 1 / visitsAfter;
    if (typeof r === 'number') return r;
    return Math.pow(visitsAfter, -r.power);
  }

  /**
   * Write a batch of cases (one episode, typically). With a merge rule, each case first looks
   * for a stored case of the same action within ε (the nearest one) and, if found, updates it
   * (q ← q + η(G − q), n ← n + 1) instead of being appended; cases earlier in the same batch
   * count as stored. Then the write policy evicts what no longer fits.
   */
  /**
   * Per new key, the nearest stored case of the same action within ε (−1 if none), from one
   * batched search of the m nearest; a query whose m candidates are all within ε without a match
   * is searched again wider (×4, up to the whole memory), so the answer is exact for distance
   * kernels (gaussian, inverse). Ties go to the earlier id.
   */
  private async mergeCandidates(
    keys: Float32Array,
    n: number,
    m: number,
    eps2: number,
    cases: ValidCase[],
  ): Promise<{ best: Int32Array; bestD2: Float64Array }> {
    const best = new Int32Array(n).fill(-1);
    const bestD2 = new Float64Array(n).fill(Infinity);
    const size = this.index.size;
    if (size === 0 || n === 0) return { best, bestD2 };
    await this.widenedSearch(keys, Array.from({ length: n }, (_, i) => i), Math.min(m, size), (i, hits, off, w, canWiden) => {
      const action = cases[i].action;
      let allWithin = true;
      for (let j = 0; j < w; j++) {
        const id = hits.ids[off + j];
        if (id < 0) {
          allWithin = false;
          break;
        }
        const d2 = hits.dist2[off + j];
        if (d2 > eps2) allWithin = false;
        const meta = this.meta.get(id);
        if (meta && meta.action === action && (!this.trustPolicy || meta.source === cases[i].source) && d2 <= eps2 && (d2 < bestD2[i] || (d2 === bestD2[i] && id < best[i]))) {
          best[i] = id;
          bestD2[i] = d2;
        }
      }
      return best[i] < 0 && allWithin && canWiden;
    });
    return { best, bestD2 };
  }

  /**
   * One batched search of `rows` of `keys` with `width` results each; `visit(row, hits, offset,
   * width, canWiden)` reads a row's results and returns true to search that row again four times
   * wider (canWiden: the width is still below the memory's size). Used where a question about
   * an ε-ball needs every case inside it (merge candidates, quarantine release).
   */
  private async widenedSearch(
    keys: Float32Array,
    rows: number[],
    width: number,
    visit: (row: number, hits: { ids: Int32Array; dist2: Float32Array }, offset: number, width: number, canWiden: boolean) => boolean,
  ): Promise<void> {
    const size = this.index.size;
    let pending = rows;
    for (;;) {
      const q = new Float32Array(pending.length * this.dim);
      pending.forEach((i, r) => q.set(keys.subarray(i * this.dim, (i + 1) * this.dim), r * this.dim));
      const hits = await this.index.search(q, width);
      const again = pending.filter((i, r) => visit(i, hits, r * width, width, width < size));
      if (again.length === 0) return;
      pending = again;
      width = Math.min(size, width * 4);
    }
  }

  /**
   * The whole batch is validated first (validateBatch: key length, finite float32 components and
   * squared norm, value representable in float32, well-formed metadata) and copied, so a bad
   * case rejects the write before anything changes, naming the case and the field. A write
   * that fails later (the index or the journal throwing) is rolled back: the memory, its index,
   * its journal, counters and RNG are left exactly as they were.
   */
  write(cases: CaseInput[]): Promise<WriteReport> {
    let batch: ValidBatch;
    try {
      batch = validateBatch(cases, this.dim);
    } catch (err) {
      return Promise.reject(err);
    }
    // A declared value range clips at the door too (a learned one only at reads: it is learned
    // from what is written).
    const vr = this.trustPolicy?.valueRange;
    if (vr && typeof vr === 'object') for (const c of batch.cases) c.value = clip(c.value, vr.min, vr.max);
    // Writes are serialised: each sees the memory as the previous one left it.
    const run = this.writeChain.then(() => this.writeNow(batch));
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  private writeChain: Promise<unknown> = Promise.resolve();

  private checkConsistent(): void {
    if (this.inconsistent) throw this.inconsistent;
  }

  private async writeNow(batch: ValidBatch): Promise<WriteReport> {
    this.checkConsistent();
    const { keys, cases } = batch;
    const n = cases.length;
    // 1. Merge targets (one batched search against stored cases; reads only). The plan and its
    // commit below are synchronous; a synchronous change (remove, setWeights, setKernel) made
    // while the search was awaited makes it stale, so it is redone.
    let target: Int32Array;
    for (;;) {
      const epoch = this.epoch;
      target = await this.mergeTargets(keys, cases);
      this.checkConsistent();
      if (epoch === this.epoch) break;
    }
    // 2. Plan (pure), 3. commit (index, journal, then the JS copy).
    const plan = this.planWrite(batch, target);
    return this.commitWrite(plan, n);
  }

  /** Per case: the stored id it merges into, −(2 + j) for an earlier case j of the batch, or −1. */
  private async mergeTargets(keys: Float32Array, cases: ValidCase[]): Promise<Int32Array> {
    const d = this.dim;
    const n = cases.length;
    const target = new Int32Array(n).fill(-1);
    if (!this.merge || n === 0) return target;
    const eps2 = this.merge.epsilon * this.merge.epsilon;
    const m = Math.max(1, this.merge.candidates ?? 8);
    const stored = await this.mergeCandidates(keys, n, m, eps2, cases);
    for (let i = 0; i < n; i++) {
      const action = cases[i].action;
      let best = stored.best[i];
      let bestD2 = stored.bestD2[i];
      // Earlier cases of this batch that were appended (not merged) also count as stored.
      for (let j = 0; j < i; j++) {
        if (target[j] !== -1 || cases[j].action !== action) continue;
        if (this.trustPolicy && cases[j].source !== cases[i].source) continue;
        let d2 = 0;
        for (let t = 0; t < d; t++) {
          const x = keys[i * d + t] - keys[j * d + t];
          d2 += x * x;
        }
        if (d2 <= eps2 && d2 < bestD2) {
          best = -(2 + j);
          bestD2 = d2;
        }
      }
      target[i] = best;
    }
    return target;
  }

  /**
   * What a write will do, computed without changing anything: merged values and metadata (new
   * objects), new cases, evictions (with a copy of the RNG), and the counters after it. Throws a
   * RangeError naming the case when a merged value would not be a finite float32.
   */
  private planWrite(batch: ValidBatch, target: Int32Array): WritePlan {
    const { keys, cases } = batch;
    const d = this.dim;
    const n = cases.length;
    let clock = this.clock;
    let seq = this.seqCounter;
    const now = Date.now();
    const pending: { value: number; visits: number; weight: number; tdError: number }[] = [];
    const mergedIds: number[] = [];
    // Stored cases merged into: their new value and metadata (first-merge order).
    const changed = new Map<number, { value: number; meta: CaseMeta }>();
    for (let i = 0; i < n; i++) {
      const c = cases[i];
      const t = target[i];
      if (t === -1) {
        const tdError = c.tdError ?? Math.abs(c.value);
        pending[i] = { value: c.value, visits: 1, weight: c.weight ?? this.weightOf(1, c.value, tdError), tdError };
        continue;
      }
      if (t <= -2) {
        const p = pending[-(t + 2)];
        const visits = p.visits + 1;
        const eta = this.mergeRate(visits);
        const err = c.value - p.value;
        const merged = p.value + eta * err;
        if (!finiteFloat32(merged)) {
          throw new RangeError(`cases[${i}].value ${c.value}: merged into cases[${-(t + 2)}] it gives ${merged}, which is not representable in float32`);
        }
        p.value = merged;
        p.visits = visits;
        p.tdError = c.tdError ?? Math.abs(err);
        p.weight = c.weight ?? this.weightOf(visits, p.value, p.tdError);
        continue;
      }
      let cur = changed.get(t);
      if (!cur) {
        cur = { value: this.values.get(t)!, meta: { ...this.meta.get(t)! } };
        changed.set(t, cur);
      }
      const visits = cur.meta.visits + 1;
      const eta = this.mergeRate(visits);
      const err = c.value - cur.value;
      const qn = Math.fround(cur.value + eta * err);
      if (!Number.isFinite(qn)) {
        throw new RangeError(`cases[${i}].value ${c.value}: merged into case ${t} it gives ${cur.value + eta * err}, which is not representable in float32`);
      }
      cur.value = qn;
      cur.meta.visits = visits;
      cur.meta.weight = c.weight ?? this.weightOf(visits, qn, c.tdError ?? Math.abs(err));
      cur.meta.touched = ++clock;
      mergedIds.push(t);
    }
    // q ← q + η(G − q) with η ∈ (0, 1] lies between q and G, so it stays a finite float32 and the
    // weights stay finite; checked anyway, since a non-finite weight would not survive JSON.
    for (const [id, cur] of changed) {
      if (!Number.isFinite(cur.meta.weight)) throw new RangeError(`the write would give case ${id} the weight ${cur.meta.weight}; weights must be finite`);
    }
    pending.forEach((p, i) => {
      if (p && !Number.isFinite(p.weight)) throw new RangeError(`cases[${i}]: the weight would be ${p.weight}; weights must be finite`);
    });

    // New cases, then eviction by the write policy.
    const fresh: number[] = [];
    for (let i = 0; i < n; i++) if (target[i] === -1) fresh.push(i);
    const freshMeta: CaseMeta[] = fresh.map((i) => {
      const c = cases[i];
      return {
        state: c.state,
        action: c.action,
        visits: pending[i].visits,
        weight: pending[i].weight,
        episode: c.episode,
        step: c.step,
        source: c.source,
        time: c.time ?? now,
        seq: ++seq,
        touched: ++clock,
      };
    });
    // A merge into a batch case refreshes that case's recency.
    for (let i = 0; i < n; i++) {
      if (target[i] <= -2) freshMeta[fresh.indexOf(-(target[i] + 2))].touched = ++clock;
    }
    const rng = new Rng();
    rng.state = this.rng.state;
    const { evictStored, dropFresh } = this.chooseEvictions(freshMeta, changed, rng);
    const evicted = Int32Array.from(evictStored);
    for (const id of evicted) changed.delete(id);

    const keepFresh = fresh.map((_, k) => k).filter((k) => !dropFresh.has(k));
    const addKeys = new Float32Array(keepFresh.length * d);
    const addVals = new Float32Array(keepFresh.length);
    keepFresh.forEach((k, r) => {
      addKeys.set(keys.subarray(fresh[k] * d, (fresh[k] + 1) * d), r * d);
      addVals[r] = pending[fresh[k]].value;
    });
    return {
      target,
      fresh,
      keepFresh,
      changed,
      mergedIds,
      evicted,
      addKeys,
      addVals,
      addMeta: keepFresh.map((k) => freshMeta[k]),
      seq,
      clock,
      rngState: rng.state,
    };
  }

  /** Apply a plan: the index and the journal first (rolled back on failure), then the JS copy. */
  private commitWrite(plan: WritePlan, n: number): WriteReport {
    const { changed, evicted, addKeys, addVals, addMeta } = plan;
    const updIds = Int32Array.from(changed.keys());
    const added = this.applyChange({
      updIds,
      updVals: Float32Array.from(changed.values(), (c) => c.value),
      addKeys,
      addVals,
      removed: evicted,
      record: (addedIds) => ({
        body: this.recordBody(plan.seq, plan.clock, plan.rngState, this.index.kernel, evicted, addedIds, [
          ...Array.from(changed, ([id, c]) => ({ id, value: c.value, meta: c.meta })),
          ...Array.from(addedIds, (id, r) => ({ id, value: addVals[r], meta: addMeta[r] })),
        ]),
        keys: addKeys,
      }),
    });

    // The JS copy (cannot fail).
    for (const id of evicted) {
      this.meta.delete(id);
      this.values.delete(id);
    }
    for (const [id, c] of changed) {
      this.meta.set(id, c.meta);
      this.values.set(id, c.value);
    }
    const freshId = new Map<number, number>();
    plan.keepFresh.forEach((k, r) => {
      this.meta.set(added[r], addMeta[r]);
      this.values.set(added[r], addVals[r]);
      freshId.set(plan.fresh[k], added[r]);
    });
    this.seqCounter = plan.seq;
    this.clock = plan.clock;
    this.rng.state = plan.rngState;

    const caseIds = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const t = plan.target[i];
      if (t === -1) caseIds[i] = freshId.get(i) ?? -1;
      else if (t <= -2) caseIds[i] = freshId.get(-(t + 2)) ?? -1;
      else caseIds[i] = this.meta.has(t) ? t : -1;
    }
    const report: WriteReport = { added, merged: Int32Array.from(plan.mergedIds), evicted, caseIds };
    this.onWrite?.({ removed: evicted, upserted: Int32Array.from([...updIds, ...added]), addedKeys: addKeys, added });
    return report;
  }

  /**
   * Change the index, in an order that can be undone, and journal the change: value updates
   * (undo: the old values), additions (undo: remove them), the journal record (undo: truncate),
   * and last the removals, which cannot be undone. When a step throws, the earlier ones are
   * undone and the error is rethrown; when an undo throws too, the memory is marked
   * inconsistent (every later change refuses with that error). Returns the added ids.
   */
  private applyChange(ch: {
    updIds?: Int32Array;
    updVals?: Float32Array;
    addKeys?: Float32Array;
    addVals?: Float32Array;
    removed?: Int32Array;
    record?: (added: Int32Array) => JournalRecord;
  }): Int32Array {
    const undo: Array<() => void> = [];
    let added: Int32Array = new Int32Array(0);
    try {
      if (ch.updIds && ch.updIds.length) {
        const ids = ch.updIds;
        const old = Float32Array.from(ids, (id) => this.values.get(id)!);
        this.index.updateValues(ids, ch.updVals!);
        undo.push(() => this.index.updateValues(ids, old));
      }
      if (ch.addVals && ch.addVals.length) {
        const got = this.index.add(ch.addKeys!, ch.addVals);
        undo.push(() => this.index.remove(got));
        if (!got || got.length !== ch.addVals.length) throw new Error(`index.add returned ${got?.length} ids for ${ch.addVals.length} keys`);
        added = got;
      }
      if (this.journal && ch.record) {
        const j = this.journal;
        const writer = j.writer;
        const rec = ch.record(added);
        const before = j.chain;
        let after = before;
        if (j.key && before) {
          const mac = journalMac(j.key, j.generation, before.index, before.prev, rec.body, rec.keys);
          rec.body = { ...rec.body, mac };
          after = { index: before.index + 1, prev: mac };
        }
        const mark = writer.append(rec);
        j.chain = after;
        undo.push(() => {
          writer.truncateTo(mark);
          j.chain = before;
        });
      }
      if (ch.removed && ch.removed.length) this.index.remove(ch.removed);
    } catch (err) {
      for (let k = undo.length - 1; k >= 0; k--) {
        try {
          undo[k]();
        } catch (undoErr) {
          this.inconsistent = new Error(
            `episodic memory is inconsistent: a change failed (${(err as Error)?.message ?? err}) and undoing it failed too ` +
              `(${(undoErr as Error)?.message ?? undoErr}); its index, journal and JS copy may disagree: reload it from disk`,
          );
          throw this.inconsistent;
        }
      }
      throw err;
    }
    this.epoch++;
    return added;
  }

  /**
   * Which stored cases to evict and which new ones never to store, so that at most the
   * capacity remains. Replay: oldest inserted first. Window: least recently written first.
   * Importance: lowest weight first (ties: oldest), or sampled ∝ 1/w.
   */
  private chooseEvictions(
    freshMeta: CaseMeta[],
    changed: Map<number, { meta: CaseMeta }>,
    rng: Rng,
  ): { evictStored: number[]; dropFresh: Set<number> } {
    const cap = this.capacity;
    const total = this.meta.size + freshMeta.length;
    const evictStored: number[] = [];
    const dropFresh = new Set<number>();
    if (total <= cap) return { evictStored, dropFresh };
    let excess = total - cap;
    // Candidates: stored ids (≥ 0) and fresh entries (encoded −1 − k).
    const take = (ref: number) => (ref >= 0 ? evictStored.push(ref) : dropFresh.add(-1 - ref));
    const p = this.policy;
    if (p.kind === 'replay') {
      // Map order is insertion order, and fresh cases are the newest: no sort needed.
      for (const id of this.meta.keys()) {
        if (excess <= 0) break;
        take(id);
        excess--;
      }
      for (let k = 0; excess > 0; k++, excess--) take(-1 - k);
      return { evictStored, dropFresh };
    }
    const pool: { ref: number; m: CaseMeta }[] = [];
    for (const [id, m] of this.meta) pool.push({ ref: id, m: changed.get(id)?.meta ?? m });
    freshMeta.forEach((m, k) => pool.push({ ref: -1 - k, m }));
    if (p.kind === 'importance' && p.sample) {
      while (excess-- > 0) {
        const w = pool.map((e) => 1 / Math.max(e.m.weight, 1e-12));
        const k = rng.categorical(w);
        take(pool[k].ref);
        pool.splice(k, 1);
      }
      return { evictStored, dropFresh };
    }
    // Window: least recently written first. Importance: lowest weight first, ties to the oldest.
    const before =
      p.kind === 'window'
        ? (a: CaseMeta, b: CaseMeta) => a.touched < b.touched
        : (a: CaseMeta, b: CaseMeta) => a.weight < b.weight || (a.weight === b.weight && a.seq < b.seq);
    for (const e of smallest(pool, excess, (a, b) => before(a.m, b.m))) take(e.ref);
    return { evictStored, dropFresh };
  }

  /** Ids as an Int32Array of known, distinct case ids (RangeError naming the first bad one). */
  private checkIds(ids: Int32Array, what: string): void {
    if (!(ids instanceof Int32Array)) throw new TypeError(`${what}: ids must be an Int32Array`);
    const seen = new Set<number>();
    for (let i = 0; i < ids.length; i++) {
      if (!this.meta.has(ids[i])) throw new RangeError(`${what}: unknown case id ${ids[i]} (ids[${i}])`);
      if (seen.has(ids[i])) throw new RangeError(`${what}: case id ${ids[i]} appears twice (ids[${i}])`);
      seen.add(ids[i]);
    }
  }

  /** Set per-case importance weights (e.g. fresh |TD errors|); all or nothing. */
  setWeights(ids: Int32Array, weights: ArrayLike<number>): void {
    this.checkConsistent();
    this.checkIds(ids, 'setWeights');
    if (weights === null || typeof weights !== 'object' || weights.length !== ids.length) {
      throw new TypeError(`setWeights: weights must be an array of ${ids.length} numbers (one per id), got length ${(weights as ArrayLike<number> | null)?.length}`);
    }
    const metas = Array.from(ids, (id, i) => {
      const w = weights[i];
      if (typeof w !== 'number') throw new TypeError(`setWeights: weights[${i}] must be a number, got ${typeof w}`);
      if (!Number.isFinite(w)) throw new RangeError(`setWeights: weights[${i}] must be finite, got ${w}`);
      return { ...this.meta.get(id)!, weight: w };
    });
    this.applyChange({
      record: () => ({
        body: this.recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, new Int32Array(0), new Int32Array(0),
          Array.from(ids, (id, i) => ({ id, value: this.values.get(id)!, meta: metas[i] }))),
        keys: new Float32Array(0),
      }),
    });
    ids.forEach((id, i) => this.meta.set(id, metas[i]));
    this.onWrite?.({ removed: new Int32Array(0), upserted: ids, addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }

  /** Remove cases by id (one native call); all or nothing. */
  remove(ids: Int32Array): void {
    this.checkConsistent();
    this.checkIds(ids, 'remove');
    this.applyChange({
      removed: ids,
      record: () => ({
        body: this.recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, ids, new Int32Array(0), []),
        keys: new Float32Array(0),
      }),
    });
    for (const id of ids) {
      this.meta.delete(id);
      this.values.delete(id);
    }
    this.onWrite?.({ removed: ids, upserted: new Int32Array(0), addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }

  // ---------- persistence (docs/memory-format.md) ----------

  private journal?: {
    dir: string;
    writer: JournalWriter;
    fsync: boolean;
    generation: number;
    /** Signing key of the records, and the chain: the next record's index and the MAC before it. */
    key?: Buffer;
    chain?: { index: number; prev: string };
  };
  /** Set by load / open: what was read. */
  loadReport?: LoadReport;

  private metaLine(m: CaseMeta): Record<string, unknown> {
    return { ...m };
  }

  /** The JSON part of a journal record: the counters after the change and what it changed. */
  private recordBody(
    seq: number,
    clock: number,
    rng: number,
    kernel: KernelSettings,
    removed: Int32Array,
    added: Int32Array,
    upserts: { id: number; value: number; meta: CaseMeta }[],
  ): Record<string, unknown> {
    return {
      seq,
      clock,
      rng,
      kernel,
      removed: Array.from(removed),
      added: Array.from(added),
      upserts: upserts.map((u) => ({ id: u.id, value: u.value, meta: this.metaLine(u.meta) })),
    };
  }

  /** The whole memory as plain arrays (ids in insertion order). */
  toSnapshotData(): SnapshotData {
    const ids = this.ids();
    return {
      dim: this.dim,
      kernel: { ...this.index.kernel },
      options: { policy: this.policy, merge: this.merge ?? null },
      counters: { seq: this.seqCounter, clock: this.clock, rng: this.rng.state },
      ids,
      keys: this.getKeys(ids),
      values: Float32Array.from(ids, (id) => this.values.get(id)!),
      meta: [...this.meta.values()].map((m) => this.metaLine(m)),
    };
  }

  /**
   * Check snapshot data as a memory needs it: shapes, ids, keys and values (snapshotRowProblem),
   * every metadata line (caseMetaProblem) and the counters. `genDir` names the files in errors
   * (a SnapshotError naming the file, the part and the row); without it, errors name the field.
   */
  static checkSnapshotData(data: SnapshotData, genDir?: string): void {
    const fail = (part: string, file: string, msg: string, row?: number): never => {
      if (genDir === undefined) throw new RangeError(`snapshot data: ${part} ${msg}`);
      const f = path.join(genDir, file);
      throw new SnapshotError(`${f} (part '${part}') ${msg}`, f, part, row);
    };
    const n = data.ids.length;
    if (!(Number.isInteger(data.dim) && data.dim >= 1)) fail('header', 'header.json', `dim must be an integer >= 1, got ${data.dim}`);
    if (data.keys.length !== n * data.dim) fail('keys', 'keys.f32', `has ${data.keys.length} floats, expected ${n} × ${data.dim}`);
    if (data.values.length !== n) fail('values', 'values.f32', `has ${data.values.length} values, expected ${n}`);
    if (data.meta.length !== n) fail('meta', 'meta.jsonl', `has ${data.meta.length} lines, expected ${n}`);
    const bad = snapshotRowProblem(data.ids, data.keys, data.values, data.dim);
    if (bad) fail(bad.part, { ids: 'ids.i32', keys: 'keys.f32', values: 'values.f32' }[bad.part], bad.message, bad.row);
    for (let i = 0; i < n; i++) {
      const p = caseMetaProblem(data.meta[i]);
      if (p) fail('meta', 'meta.jsonl', `line ${i + 1} (id ${data.ids[i]}): ${p}`, i);
    }
    if (typeof data.options !== 'object' || data.options === null || Array.isArray(data.options)) {
      fail('header', 'header.json', `options must be an object { policy, merge }, got ${JSON.stringify(data.options)}`);
    }
    const c = data.counters ?? {};
    for (const k of ['seq', 'clock'] as const) {
      const v = c[k];
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) fail('header', 'header.json', `counters.${k} must be an integer >= 0, got ${JSON.stringify(v)}`);
    }
    if (c.rng !== undefined && !(Number.isInteger(c.rng) && c.rng >= 0 && c.rng <= 0xffffffff)) {
      fail('header', 'header.json', `counters.rng must be a uint32, got ${JSON.stringify(c.rng)}`);
    }
  }

  /** Rebuild a memory from snapshot data (one addWithIds call), after checkSnapshotData. */
  static fromSnapshotData(data: SnapshotData, backend: 'native' | 'js' | 'auto' = 'auto', genDir?: string): EpisodicMemory {
    EpisodicMemory.checkSnapshotData(data, genDir);
    const opts = (data.options ?? {}) as { policy?: WritePolicy; merge?: MergeRule | null };
    let mem: EpisodicMemory;
    try {
      mem = new EpisodicMemory({
        dim: data.dim,
        kernel: data.kernel as unknown as KernelSettings,
        policy: opts.policy,
        merge: opts.merge ?? undefined,
        backend,
      });
    } catch (err) {
      // Stored options the store refuses (a forged or damaged header): an error of the file.
      // Anything else (the addon failing to load, out of memory) is the environment's.
      if (genDir === undefined || !(err instanceof TypeError || err instanceof RangeError) || /^backend must be/.test(err.message)) throw err;
      const hfile = path.join(genDir, 'header.json');
      throw new SnapshotError(`${hfile} (part 'header'): the stored dim, kernel or options cannot be used: ${err.message}`, hfile, 'header');
    }
    const n = data.ids.length;
    if (n) mem.index.addWithIds(data.ids, data.keys, data.values);
    for (let i = 0; i < n; i++) {
      mem.meta.set(data.ids[i], { ...(data.meta[i] as CaseMeta) });
      mem.values.set(data.ids[i], data.values[i]);
    }
    const c = data.counters ?? {};
    mem.seqCounter = c.seq ?? 0;
    mem.clock = c.clock ?? 0;
    if (c.rng !== undefined) mem.rng.state = c.rng;
    return mem;
  }

  /**
   * Save atomically into dir as a new generation (the previous one stays loadable until the
   * switch). When this memory journals into the same dir, the journal restarts after it.
   */
  save(dir: string, opts: SaveOptions = {}): { generation: number; path: string } {
    this.checkConsistent();
    // Verified as read back from disk, as a load would, before it becomes current.
    const verify: SaveOptions['verify'] = (data, genDir) => {
      EpisodicMemory.checkSnapshotData(data, genDir);
      opts.verify?.(data, genDir);
    };
    const res = writeSnapshot(dir, this.toSnapshotData(), { ...opts, verify });
    if (this.journal && path.resolve(this.journal.dir) === path.resolve(dir)) {
      const next = JournalWriter.open(path.join(dir, journalName(res.generation)), res.generation, { fsync: this.journal.fsync });
      this.journal.writer.close();
      this.journal.writer = next;
      this.journal.generation = res.generation;
      this.journal.chain = { index: 0, prev: snapshotManifest(dir, res.generation) };
    }
    return res;
  }

  /**
   * Journal every later write into dir (which must hold a snapshot: save first). With a key
   * (opts.key, else MEMQ_MEMORY_KEY) every record carries an HMAC-SHA-256 chained from the
   * snapshot's manifest MAC through the records before it (docs/memory-format.md).
   */
  attachJournal(dir: string, opts: { fsync?: boolean; validBytes?: number; key?: string | Uint8Array; chain?: { index: number; prev: string } } = {}): void {
    const gen = currentGeneration(dir);
    if (gen === undefined) throw new SnapshotError(`attachJournal: ${dir} holds no snapshot; save() first`, dir, 'CURRENT');
    const key = resolveKey(opts.key, 'attachJournal: key');
    this.detachJournal();
    const fsync = opts.fsync ?? true;
    const file = path.join(dir, journalName(gen));
    let chain = opts.chain;
    if (key && !chain) {
      // Continue the chain after the records already there (their MACs are not checked here: load does that).
      const j = fs.existsSync(file) ? readJournal(file, gen) : { records: [] as JournalRecord[] };
      const last = j.records.at(-1)?.body.mac;
      chain = { index: j.records.length, prev: typeof last === 'string' ? last : snapshotManifest(dir, gen) };
    }
    const writer = JournalWriter.open(file, gen, { fsync, validBytes: opts.validBytes });
    this.journal = { dir, writer, fsync, generation: gen, key, chain };
  }

  detachJournal(): void {
    if (this.journal) {
      this.journal.writer.close();
      this.journal = undefined;
    }
  }

  private applyJournalRecord(rec: JournalRecord): void {
    const b = rec.body as {
      seq: number;
      clock: number;
      rng?: number;
      removed: number[];
      added: number[];
      upserts: { id: number; value: number; meta: CaseMeta }[];
      kernel?: KernelSettings;
    };
    const removed = Int32Array.from(b.removed.filter((id) => this.meta.has(id)));
    if (removed.length) {
      this.index.remove(removed);
      for (const id of removed) {
        this.meta.delete(id);
        this.values.delete(id);
      }
    }
    const added = new Set(b.added);
    const byId = new Map(b.upserts.map((u) => [u.id, u]));
    const upd = b.upserts.filter((u) => !added.has(u.id) && this.meta.has(u.id));
    if (upd.length) {
      this.index.updateValues(Int32Array.from(upd, (u) => u.id), Float32Array.from(upd, (u) => u.value));
      for (const u of upd) {
        this.meta.set(u.id, { ...u.meta });
        this.values.set(u.id, Math.fround(u.value));
      }
    }
    if (b.added.length) {
      const ids = Int32Array.from(b.added);
      const vals = Float32Array.from(b.added, (id) => byId.get(id)!.value);
      this.index.addWithIds(ids, rec.keys, vals);
      b.added.forEach((id, i) => {
        this.meta.set(id, { ...byId.get(id)!.meta });
        this.values.set(id, vals[i]);
      });
    }
    this.seqCounter = b.seq;
    this.clock = b.clock;
    if (b.rng !== undefined) this.rng.state = b.rng;
    if (b.kernel) this.index.setKernel(b.kernel);
  }

  /**
   * Load the current generation of dir, then replay its journal up to a torn tail. Every part
   * is verified before anything is built; a damaged file throws a SnapshotError naming it.
   */
  static load(dir: string, opts: LoadOptions = {}): EpisodicMemory {
    if (opts.attachJournal && opts.replayJournal === false) {
      throw new RangeError('load: attachJournal needs replayJournal (appending after unreplayed records would fork the history)');
    }
    if (opts.untrustedSource !== undefined && typeof opts.untrustedSource !== 'string') {
      throw new TypeError(`load: untrustedSource must be a source name like 'import:vendor', got ${typeof opts.untrustedSource}`);
    }
    const key = resolveKey(opts.key, 'load: key');
    const untrusted = opts.untrustedSource;
    if (untrusted !== undefined) {
      const pol = opts.trust !== undefined ? makeTrustPolicy(opts.trust) : defaultPolicy();
      if (trustLevelOf(pol, untrusted) !== 'untrusted') {
        throw new RangeError(`load: untrustedSource ${JSON.stringify(untrusted)} is rated trusted by the trust policy; name an untrusted source (e.g. 'import:NAME')`);
      }
      if (opts.attachJournal) throw new RangeError('load: attachJournal cannot be combined with untrustedSource (the journal would record the rewritten sources as the snapshot\'s own)');
    }
    const snap = readSnapshot(dir, untrusted === undefined ? { key } : {});
    if (untrusted !== undefined) snap.data.meta = snap.data.meta.map((m) => (typeof m === 'object' && m !== null ? { ...m, source: untrusted } : m));
    let journal = { records: [] as JournalRecord[], validBytes: 0, tornBytes: 0 };
    const jfile = path.join(dir, journalName(snap.generation));
    if (opts.replayJournal ?? true) journal = readJournal(jfile, snap.generation);
    // With a key, every journal record must carry its chained MAC (docs/memory-format.md).
    let chain: { index: number; prev: string } | undefined;
    if (key && untrusted === undefined) {
      chain = { index: 0, prev: snap.header.signature?.manifest ?? '' };
      journal.records.forEach((rec, k) => {
        const part = `journal record ${k}`;
        const mac = rec.body.mac;
        if (typeof mac !== 'string') {
          throw new SnapshotError(`${jfile} (part '${part}'): the record is unsigned but a key is set (written without the key); checkpoint() it with the key, or load with replayJournal: false`, jfile, part);
        }
        if (!sameMac(mac, journalMac(key, snap.generation, chain!.index, chain!.prev, rec.body, rec.keys))) {
          throw new SnapshotError(`${jfile} (part '${part}'): signature check failed (HMAC-SHA-256 mismatch): the record was changed, reordered or comes from another journal`, jfile, part);
        }
        chain = { index: k + 1, prev: mac };
      });
    }
    if (untrusted !== undefined) {
      for (const rec of journal.records) {
        const ups = (rec.body as { upserts?: { meta?: Record<string, unknown> }[] }).upserts;
        if (Array.isArray(ups)) for (const u of ups) if (u && typeof u.meta === 'object' && u.meta !== null) u.meta = { ...u.meta, source: untrusted };
      }
    }
    const mem = EpisodicMemory.fromSnapshotData(snap.data, opts.backend ?? 'auto', path.join(dir, generationName(snap.generation)));
    journal.records.forEach((rec, k) => {
      const part = `journal record ${k}`;
      const problem = journalRecordProblem(rec, mem.dim);
      if (problem) throw new SnapshotError(`${jfile} (part '${part}') is malformed: ${problem}`, jfile, part);
      try {
        mem.applyJournalRecord(rec);
      } catch (err) {
        throw new SnapshotError(`${jfile} (part '${part}') cannot be replayed: ${(err as Error)?.message ?? err}`, jfile, part);
      }
    });
    mem.loadReport = { generation: snap.generation, journalRecords: journal.records.length, journalTornBytes: journal.tornBytes };
    if (opts.trust !== undefined) mem.setTrust(opts.trust);
    if (opts.attachJournal) {
      mem.attachJournal(dir, { fsync: opts.fsync, validBytes: journal.validBytes > 0 ? journal.validBytes : undefined, key, chain });
    }
    return mem;
  }

  /**
   * Import the cases of another memory's snapshot (dir) through this memory's write path, every
   * case recorded with `opts.source`. A snapshot whose signature verifies with the key may come
   * in under any source; an unsigned or foreign one only under a source the trust policy rates
   * untrusted (RangeError otherwise), where quarantine holds it until the agent's own outcomes
   * agree. The snapshot's journal is not read. Returns the write report.
   */
  async import(dir: string, opts: ImportOptions): Promise<WriteReport> {
    if (typeof opts !== 'object' || opts === null || typeof opts.source !== 'string' || opts.source === '') {
      throw new TypeError(`import: opts.source must name the source, e.g. { source: 'import:vendor' }`);
    }
    const key = resolveKey(opts.key, 'import: key');
    let verified = false;
    let snap: ReturnType<typeof readSnapshot>;
    if (key) {
      try {
        snap = readSnapshot(dir, { key });
        verified = true;
      } catch (err) {
        // Only a signature failure makes it unverified; damage (CRC, rows) is refused as ever.
        if (!(err instanceof SnapshotError) || !/signature/.test(err.message)) throw err;
        snap = readSnapshot(dir);
      }
    } else {
      snap = readSnapshot(dir);
    }
    if (!verified && this.trustLevel(opts.source) !== 'untrusted') {
      throw new RangeError(
        `import: ${dir} is ${key ? 'not signed with this key' : 'unverified (no key set)'}, so it can only be imported under an untrusted source; ${JSON.stringify(opts.source)} is trusted (use e.g. 'import:NAME')`,
      );
    }
    const d = snap.data;
    if (d.dim !== this.dim) throw new RangeError(`import: ${dir} holds keys of dim ${d.dim}, this memory's dim is ${this.dim}`);
    EpisodicMemory.checkSnapshotData(d, path.join(dir, generationName(snap.generation)));
    const cases: CaseInput[] = Array.from(d.ids, (_, i) => {
      const m = d.meta[i] as CaseMeta;
      return {
        key: d.keys.subarray(i * d.dim, (i + 1) * d.dim),
        value: d.values[i],
        state: m.state,
        action: m.action,
        episode: m.episode,
        step: m.step,
        time: m.time,
        source: opts.source,
      };
    });
    return this.write(cases);
  }

  /**
   * Durable memory in dir: load it (replaying the journal) when a snapshot exists, else create
   * it with `options` and save generation 1; either way, journal every later write.
   */
  static open(dir: string, options: EpisodicMemoryOptions, opts: { fsync?: boolean; key?: string | Uint8Array } = {}): EpisodicMemory {
    if (currentGeneration(dir) !== undefined) {
      return EpisodicMemory.load(dir, { backend: options.backend, attachJournal: true, fsync: opts.fsync, key: opts.key, trust: options.trust });
    }
    const mem = new EpisodicMemory(options);
    mem.save(dir, { fsync: opts.fsync, key: opts.key });
    mem.attachJournal(dir, { fsync: opts.fsync, key: opts.key });
    return mem;
  }

  /** Save into the journal's dir (compacting the journal into a new generation, signed with the journal's key). */
  checkpoint(): { generation: number; path: string } {
    if (!this.journal) throw new Error('checkpoint: no journal attached (use EpisodicMemory.open or attachJournal)');
    return this.save(this.journal.dir, { fsync: this.journal.fsync, ...(this.journal.key ? { key: this.journal.key } : {}) });
  }

  // ---------- reads ----------

  /**
   * Q̂ and λ per query (MATH §3). Without a trust policy: the native fused estimate. With one:
   * the top-m after quarantine from one search, values clipped into the value range, kernel
   * weights capped (trust.capShares), then the §3 formula in float64 (docs/trust.md).
   */
  estimate(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }) {
    if (this.trustPolicy) return this.trustedEstimate(queries, m, opts, false);
    return this.index.estimate(queries, m, opts);
  }

  /** Top-m per query; with a trust policy, quarantined cases are left out. */
  search(queries: Float32Array, m: number): Promise<IndexSearchResult> {
    if (this.trustPolicy) {
      checkQueries(queries, this.dim, 'search');
      return this.trustedHits(queries, m, false).then((r) => r.hits);
    }
    return this.index.search(queries, m);
  }

  /**
   * Q̂ and λ on the calling thread when the read is small (queries × cases × dim below
   * `syncWork`), else on a worker thread: a per-step read of a few dozen keys costs less than
   * the thread hop, and a large one must not block the event loop.
   */
  estimateAuto(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }, syncWork = 2e8) {
    const work = (queries.length / this.dim) * this.size * this.dim;
    if (this.trustPolicy) return this.trustedEstimate(queries, m, opts, work <= syncWork);
    return work <= syncWork ? Promise.resolve(this.index.estimateSync(queries, m, opts)) : this.index.estimate(queries, m, opts);
  }

  searchAuto(queries: Float32Array, m: number, syncWork = 2e8): Promise<IndexSearchResult> {
    const work = (queries.length / this.dim) * this.size * this.dim;
    if (this.trustPolicy) {
      checkQueries(queries, this.dim, 'searchAuto');
      return this.trustedHits(queries, m, work <= syncWork).then((r) => r.hits);
    }
    return work <= syncWork ? Promise.resolve(this.index.searchSync(queries, m)) : this.index.search(queries, m);
  }

  /**
   * Parzen retrieval prior with the void case over the top-M (MATH §4), per query; with
   * reportDropped, the mass the full estimate puts outside the top-M (a second, full search).
   */
  async retrievalPrior(queries: Float32Array, m: number, voidWeight: number, opts: { reportDropped?: boolean } = {}): Promise<ParzenPrior[]> {
    if (this.trustPolicy) return this.trustedPrior(queries, m, voidWeight);
    const b = queries.length / this.dim;
    const hits = await this.index.search(queries, m);
    let totals: Float64Array | undefined;
    if (opts.reportDropped) {
      totals = new Float64Array(b);
      const all = this.size;
      if (all > 0) {
        const full = await this.index.search(queries, all);
        for (let q = 0; q < b; q++) for (let j = 0; j < all; j++) if (full.ids[q * all + j] >= 0) totals[q] += full.kernel[q * all + j];
      }
    }
    const out: ParzenPrior[] = [];
    for (let q = 0; q < b; q++) out.push(parzenPrior(hits.ids, hits.kernel, voidWeight, q * m, m, totals ? totals[q] : undefined));
    return out;
  }

  /**
   * The Parzen prior under the trust policy: μ(c) = w_c / (Σ w + κ∅) with the capped weights w
   * of the top-m after quarantine (so μ(c) ≤ maxCaseShare and Σ_{c∈source} μ(c) ≤ maxSourceShare).
   * The dropped-mass report is not available here.
   */
  private async trustedPrior(queries: Float32Array, m: number, voidWeight: number): Promise<ParzenPrior[]> {
    checkQueries(queries, this.dim, 'retrievalPrior');
    if (!(voidWeight >= 0) || !Number.isFinite(voidWeight)) throw new RangeError(`voidWeight must be a finite number >= 0, got ${voidWeight}`);
    const pol = this.trustPolicy!;
    const rows = await this.trustedRows(queries, m, false);
    return rows.map((r) => {
      const e = cappedEstimate(r.kernel, r.values, r.sources, pol.maxCaseShare, pol.maxSourceShare, voidWeight, 0);
      let sum = 0;
      for (const w of e.weights) sum += w;
      const z = sum + voidWeight;
      const probs = Float64Array.from(e.weights, (w) => (z > 0 ? w / z : 0));
      const voidProb = z > 0 ? voidWeight / z : 1;
      return { ids: Int32Array.from(r.ids), caseProbs: probs, voidProb, confidence: 1 - voidProb };
    });
  }

  /**
   * Empirical coverage radius ε(M) = max over the query states of the distance to the nearest
   * case key (MATH §13), with the per-query distances. Infinity for an empty memory.
   */
  async coverageRadius(queries: Float32Array): Promise<{ radius: number; distances: Float64Array }> {
    if (!(queries instanceof Float32Array)) throw new TypeError('coverageRadius: queries must be a Float32Array (b × dim)');
    if (queries.length % this.dim !== 0) throw new TypeError(`coverageRadius: queries.length must be a multiple of dim (${this.dim}), got ${queries.length}`);
    const b = queries.length / this.dim;
    const distances = new Float64Array(b).fill(Infinity);
    if (this.size > 0 && b > 0) {
      // The cosine kernel ranks by angle, not distance: the nearest key needs every candidate.
      const m = this.kernel.kernel === 'cosine' ? this.size : 1;
      const hits = await this.index.search(queries, m);
      for (let q = 0; q < b; q++) {
        for (let j = 0; j < m; j++) {
          if (hits.ids[q * m + j] >= 0) distances[q] = Math.min(distances[q], Math.sqrt(Math.max(0, hits.dist2[q * m + j])));
        }
      }
    }
    let radius = b > 0 ? 0 : Infinity;
    for (const d of distances) radius = Math.max(radius, d);
    return { radius, distances };
  }

  /** Choose the Gaussian bandwidth by a MATH §9 rule on the current contents, and apply it. */
  setBandwidth(rule: BandwidthRule): number {
    const ids = this.ids();
    const keys = this.getKeys(ids);
    const values = Float64Array.from(ids, (id) => this.values.get(id)!);
    const h = chooseBandwidth(rule, keys, values, ids.length, this.dim);
    this.setKernel({ kernel: 'gaussian', bandwidth: h });
    return h;
  }

  /** Change the kernel (journalled like a write; all or nothing). */
  setKernel(kernel: KernelSettings): void {
    this.checkConsistent();
    const old = this.index.kernel;
    this.index.setKernel(kernel);
    try {
      this.applyChange({
        record: () => ({
          body: this.recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, new Int32Array(0), new Int32Array(0), []),
          keys: new Float32Array(0),
        }),
      });
    } catch (err) {
      try {
        this.index.setKernel(old);
      } catch (undoErr) {
        this.inconsistent = new Error(`episodic memory is inconsistent: journalling a kernel change failed (${(err as Error)?.message ?? err}) and restoring the old kernel failed too (${(undoErr as Error)?.message ?? undoErr}): reload it from disk`);
        throw this.inconsistent;
      }
      throw err;
    }
    this.onWrite?.({ removed: new Int32Array(0), upserted: new Int32Array(0), addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }
}

/**
 * MAC of journal record `index` of generation `gen`: HMAC-SHA-256(key, "memq-journal\0" gen
 * "\0" index "\0" prev "\0" ‖ JSON of the body without its mac ‖ the added keys' bytes), where
 * prev is the MAC of the record before (for record 0: the snapshot's manifest MAC, "" unsigned).
 */
function journalMac(key: Buffer, gen: number, index: number, prev: string, body: Record<string, unknown>, keys: Float32Array): string {
  const { mac: _m, ...rest } = body;
  return crypto.createHmac('sha256', key).update(`memq-journal\0${gen}\0${index}\0${prev}\0`).update(JSON.stringify(rest)).update(leBytes(keys)).digest('hex');
}

function sameMac(a: string, b: string): boolean {
  return a.length === b.length && crypto.timingSafeEqual(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The manifest MAC of a generation's header ("" when unsigned or unreadable: load checks the snapshot itself). */
function snapshotManifest(dir: string, gen: number): string {
  try {
    const h = JSON.parse(fs.readFileSync(path.join(dir, generationName(gen), 'header.json'), 'utf8'));
    const m = h?.header?.signature?.manifest;
    return typeof m === 'string' ? m : '';
  } catch {
    return '';
  }
}

let defaultTrust: TrustPolicy | undefined;
function defaultPolicy(): TrustPolicy {
  return (defaultTrust ??= makeTrustPolicy({}));
}

/** Queries must be a Float32Array of whole rows (the index would refuse them later, less clearly). */
function checkQueries(queries: Float32Array, dim: number, what: string): void {
  if (!(queries instanceof Float32Array)) throw new TypeError(`${what}: queries must be a Float32Array (b × dim)`);
  if (queries.length % dim !== 0) throw new TypeError(`${what}: queries.length must be a multiple of dim (${dim}), got ${queries.length}`);
}

/**
 * The k smallest items under a strict order `less` (stable: earlier items win ties), without
 * sorting everything: one pass keeping a sorted buffer of k. O(n·k) worst case; k is a batch.
 */
function smallest<T>(items: T[], k: number, less: (a: T, b: T) => boolean): T[] {
  if (k >= items.length) return items.slice();
  if (k > 256) {
    const idx = items.map((_, i) => i);
    idx.sort((i, j) => (less(items[i], items[j]) ? -1 : less(items[j], items[i]) ? 1 : i - j));
    return idx.slice(0, k).map((i) => items[i]);
  }
  const buf: T[] = [];
  for (const it of items) {
    if (buf.length === k && !less(it, buf[k - 1])) continue;
    let pos = buf.length;
    while (pos > 0 && less(it, buf[pos - 1])) pos--;
    buf.splice(pos, 0, it);
    if (buf.length > k) buf.pop();
  }
  return buf;
}

/** A write worked out before anything changes (see planWrite). */
interface WritePlan {
  /** Per case: stored id merged into, −(2 + j) for batch case j, or −1 (appended). */
  target: Int32Array;
  /** Batch indices of the appended cases; keepFresh: indices into fresh that are stored. */
  fresh: number[];
  keepFresh: number[];
  /** Stored cases merged into and not evicted: new value and metadata. */
  changed: Map<number, { value: number; meta: CaseMeta }>;
  mergedIds: number[];
  evicted: Int32Array;
  addKeys: Float32Array;
  addVals: Float32Array;
  addMeta: CaseMeta[];
  seq: number;
  clock: number;
  rngState: number;
}

/** First problem with a journal record's shape and contents, or undefined. */
function journalRecordProblem(rec: JournalRecord, dim: number): string | undefined {
  const b = rec.body as Record<string, unknown>;
  const isId = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_ID;
  for (const k of ['seq', 'clock'] as const) {
    if (!(Number.isSafeInteger(b[k]) && (b[k] as number) >= 0)) return `${k} must be an integer >= 0, got ${JSON.stringify(b[k])}`;
  }
  if (b.rng !== undefined && !(Number.isInteger(b.rng) && (b.rng as number) >= 0 && (b.rng as number) <= 0xffffffff)) return `rng must be a uint32, got ${JSON.stringify(b.rng)}`;
  if (b.kernel !== undefined && (typeof b.kernel !== 'object' || b.kernel === null)) return 'kernel must be an object';
  if (!Array.isArray(b.removed) || !b.removed.every(isId)) return 'removed must be an array of ids';
  if (!Array.isArray(b.added) || !b.added.every(isId)) return 'added must be an array of ids';
  for (let i = 1; i < b.added.length; i++) if (b.added[i] <= b.added[i - 1]) return `added ids must be strictly increasing (added[${i}] = ${b.added[i]})`;
  if (!Array.isArray(b.upserts)) return 'upserts must be an array';
  const ups = new Set<number>();
  for (let i = 0; i < b.upserts.length; i++) {
    const u = b.upserts[i] as { id?: unknown; value?: unknown; meta?: unknown };
    if (typeof u !== 'object' || u === null || !isId(u.id)) return `upserts[${i}].id must be an id`;
    if (typeof u.value !== 'number' || !finiteFloat32(u.value)) return `upserts[${i}] (id ${u.id}): value ${JSON.stringify(u.value)} is not a finite float32`;
    const p = caseMetaProblem(u.meta);
    if (p) return `upserts[${i}] (id ${u.id}): meta: ${p}`;
    ups.add(u.id as number);
  }
  for (const id of b.added as number[]) if (!ups.has(id)) return `added id ${id} has no upsert (value and meta)`;
  if (rec.keys.length !== b.added.length * dim) return `holds ${rec.keys.length} key floats for ${b.added.length} added cases of dim ${dim}`;
  for (let r = 0; r < b.added.length; r++) {
    const p = keyRowProblem(rec.keys, r, dim);
    if (p) return `key of added id ${(b.added as number[])[r]}: ${p}`;
  }
  return undefined;
}

/** What one write changed: the journal records it. */
export interface MemoryChange {
  removed: Int32Array;
  /** Ids whose value or metadata changed, or that were added. */
  upserted: Int32Array;
  /** Ids of the newly added cases, and their keys (added.length × dim). */
  added: Int32Array;
  addedKeys: Float32Array;
}
