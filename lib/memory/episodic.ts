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
import { Mulberry32 } from '../policy/rng';
import { CaseStore } from './caseStore';
import type { IndexLike, IndexSearchResult } from './indexLike';
import type { CaseInput, CaseMeta, CaseRows, EpisodicMemoryOptions, MergeRule, WriteOptions, WritePolicy, WriteReport } from './types';
import * as fs from 'fs';
import * as path from 'path';
import {
  currentGeneration,
  generationName,
  journalName,
  readSnapshot,
  resolveKey,
  SnapshotError,
  verifyPartFile,
  writeSnapshot,
  type SaveOptions,
  type SnapshotData,
} from './snapshot';
import { JournalWriter, readJournal, type JournalRecord } from './journal';
import { UNVERIFIED_PREFIX, verifyWrite, writerKeyOf } from './provenance';
import { capacityProblem, checkSnapshotData, journalMac, journalRecordProblem, recordBody, sameMac, snapshotManifest } from './persistence';
import { MetaColumns } from './metaColumns';
import { batchMergeTargets, planWrite, policyCapacity, type StoreView, type WritePlan } from './writePlan';
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
  validateBatch,
  validateRows,
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
  /**
   * Memory-map the snapshot's keys and metadata instead of reading them (default false). The
   * files' lengths (and the metadata's layout) are checked; the key rows by the first search
   * (which also reads them, page by page), each chunk of metadata rows when a case in it is
   * first read, and the CRC-32s and every row by `verifyMapped()` (with a key, the MACs are
   * checked at load, which reads the files once). Ids and values are read and checked as usual.
   * The index runs on the CPU; writes after the load go to RAM (copy-on-write); tombstones of
   * mapped rows are not compacted until the next save and load. The snapshot's directory must
   * stay in place, unmodified, while mapped (a later save may delete the generation: the
   * mapping keeps the file). See docs/memory-format.md.
   */
  mmap?: boolean;
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

/**
 * The index of a memory: the native MemoryIndex (the addon ships prebuilt with the npm package;
 * a memory cannot run without it). 'auto' and 'native' are the same; an addon that cannot be
 * loaded is an error naming the cause. 'js' is test-only: the float64 ReferenceIndex lives in
 * test/helpers/referenceIndex.ts, which registers itself (registerTestIndex) when imported.
 */
export function createIndex(
  dim: number,
  kernel: KernelSettings,
  backend: 'native' | 'js' | 'auto' = 'auto',
  device?: 'cpu',
): { index: IndexLike; backend: 'native' | 'js' } {
  if (backend === 'js') {
    if (!testIndex) {
      throw new TypeError(
        "backend 'js' is no longer available: the float64 ReferenceIndex is not part of the memq library (it lives in the test suite); " +
          "episodic memory runs on the native addon: omit the backend option or pass 'native'",
      );
    }
    return { index: testIndex(dim, kernel), backend: 'js' };
  }
  loadNative();
  return { index: new MemoryIndex({ dim, ...kernel, ...(device ? { backend: device } : {}) }), backend: 'native' };
}

let testIndex: ((dim: number, kernel: KernelSettings) => IndexLike) | undefined;

/**
 * @internal Test seam: the index behind backend 'js' (test/helpers/referenceIndex.ts registers
 * the float64 ReferenceIndex, which the tests compare the native index against).
 */
export function registerTestIndex(make: (dim: number, kernel: KernelSettings) => IndexLike): void {
  testIndex = make;
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
  /**
   * @internal The cases' metadata in typed columns, in insertion order (lib/memory/caseStore.ts);
   * their values live only in the index, read through the store.
   */
  store: CaseStore;
  /** @internal */ seqCounter = 0;
  /** @internal */ clock = 0;
  private readonly rng: Mulberry32;
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
    const made = createIndex(options.dim, options.kernel ?? { kernel: 'gaussian', bandwidth: 1 }, options.backend ?? 'auto', options.indexBackend);
    this.index = made.index;
    this.backend = made.backend;
    this.store = new CaseStore(this.index);
    this.rng = new Mulberry32(this.policy.kind === 'importance' ? this.policy.seed ?? 1 : 1);
    if (options.trust !== undefined) this.setTrust(options.trust);
  }

  // ---------- trust (docs/trust.md) ----------

  /** The active trust policy (normalised), or undefined. */
  get trust(): TrustPolicy | undefined {
    return this.trustPolicy;
  }

  /** Set or clear (undefined) the trust policy; hub flags and counts are kept unless cleared. */
  setTrust(options: TrustOptions | undefined): void {
    const policy = options === undefined ? undefined : makeTrustPolicy(options);
    // Resolved before anything changes: a bad key leaves the old policy in place.
    const key = policy ? writerKeyOf(options!.authenticate) : null;
    this.trustPolicy = policy;
    this.#writerKey = key;
    this.trustCache = undefined;
  }

  /** The writer key of authenticated provenance (private: only a holder of the key can sign). */
  #writerKey: Buffer | null = null;

  /**
   * Authenticated provenance: without a valid MAC, the cases of the batch whose source is
   * trusted are stored as 'unverified:<source>' (untrusted). Returns how many were.
   */
  private authenticate(batch: ValidBatch, mac: unknown): number {
    const key = this.#writerKey;
    if (!key) return 0;
    const { keys, cases } = batch;
    if (verifyWrite(key, mac, keys, cases.map((c) => c.value), cases.map((c) => c.source))) return 0;
    let n = 0;
    for (const c of cases) {
      if (this.trustLevel(c.source) !== 'trusted') continue;
      c.source = UNVERIFIED_PREFIX + c.source;
      n++;
    }
    return n;
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
    const all = this.store.ids();
    const allValues = this.store.values(all);
    // Per interned source code: its trust level and whether it is a self source.
    const level = new Map<number, { untrusted: boolean; self: boolean }>();
    for (let i = 0; i < all.length; i++) {
      const code = this.store.sourceOf(all[i]);
      let l = level.get(code);
      if (!l) {
        const name = this.store.sources.string(code);
        level.set(code, (l = { untrusted: trustLevelOf(pol, name) === 'untrusted', self: pol.selfSources.includes(name) }));
      }
      if (l.untrusted) untrusted.push(all[i]);
      if (l.self) selfValues.push(allValues[i]);
    }
    const valueOf = new Map<number, number>();
    all.forEach((id, i) => valueOf.set(id, allValues[i]));
    const rule = pol.quarantine;
    if (rule && untrusted.length) {
      const ids = Int32Array.from(untrusted);
      const keys = this.getKeys(ids);
      const r2 = rule.radius * rule.radius;
      const size = this.index.size;
      const width = Math.min(size, Math.max(4 * rule.k, 32) + untrusted.length);
      await this.widenedSearch(keys, Array.from(ids.keys()), width, (i, hits, off, w, canWiden) => {
        const v = valueOf.get(ids[i])!;
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
          if (d2 <= r2 && this.store.has(id) && level.get(this.store.sourceOf(id))!.self && Math.abs(valueOf.get(id)! - v) <= rule.delta) agree++;
        }
        if (agree >= rule.k) return false;
        if (lastWithin && canWiden) return true;
        quarantined.add(ids[i]);
        return false;
      });
    }
    for (const id of this.hubFlags) if (this.store.has(id)) quarantined.add(id);
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
    const sourceIdx = new Map<number, number>();
    const live = hits.ids.filter((id) => id >= 0);
    const vals = this.store.values(live);
    let k = 0;
    const rows: { ids: number[]; kernel: number[]; values: number[]; sources: number[] }[] = [];
    for (let q = 0; q < b; q++) {
      const row = { ids: [] as number[], kernel: [] as number[], values: [] as number[], sources: [] as number[] };
      for (let j = 0; j < m; j++) {
        const id = hits.ids[q * m + j];
        if (id < 0) continue;
        const code = this.store.sourceOf(id);
        let v = vals[k++];
        if (range) v = clip(v, range.min, range.max);
        let si = sourceIdx.get(code);
        if (si === undefined) sourceIdx.set(code, (si = sourceIdx.size));
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
    const cand = [...counts].filter(([id, n]) => n >= rule.minCount && this.store.has(id)).map(([id]) => id);
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
    return this.store.size;
  }

  get kernel(): KernelSettings {
    return this.index.kernel;
  }

  get capacity(): number {
    return policyCapacity(this.policy);
  }

  /** Live ids in insertion order. */
  ids(): Int32Array {
    return this.store.ids();
  }

  getCase(id: number): (CaseMeta & { id: number; value: number; trust: TrustLevel }) | undefined {
    if (!this.store.has(id)) return undefined;
    const m = this.store.meta(id);
    return { ...m, id, value: this.store.value(id), trust: this.trustLevel(m.source) };
  }

  getKeys(ids: Int32Array): Float32Array {
    return ids.length ? this.index.getKeys(ids) : new Float32Array(0);
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
        if (this.store.has(id) && this.store.action(id) === action && (!this.trustPolicy || this.store.source(id) === cases[i].source) && d2 <= eps2 && (d2 < bestD2[i] || (d2 === bestD2[i] && id < best[i]))) {
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
  write(cases: CaseInput[], opts?: WriteOptions): Promise<WriteReport> {
    let batch: ValidBatch;
    try {
      batch = validateBatch(cases, this.dim);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(batch, opts);
  }

  /**
   * Write n cases given as flat arrays: keys (n × dim, row i = case i), values (n), and
   * optional per-row metadata columns (CaseRows: a single value for all rows or one per row).
   * Same semantics, validation and report as write(cases); the form the agents use, with no
   * per-case objects in between.
   */
  writeRows(keys: Float32Array, values: ArrayLike<number>, rows?: CaseRows, opts?: WriteOptions): Promise<WriteReport> {
    let batch: ValidBatch;
    try {
      batch = validateRows(keys, values, rows, this.dim);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(batch, opts);
  }

  /** `authenticated`: the memory's own write of a batch the key holder signed (a verified import). */
  private enqueue(batch: ValidBatch, opts?: WriteOptions, authenticated = false): Promise<WriteReport> {
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) return Promise.reject(new TypeError('write options must be an object { mac }'));
    // Provenance is checked on the batch as written (before clipping), in the caller's turn.
    const unverified = authenticated ? 0 : this.authenticate(batch, opts?.mac);
    // A declared value range clips at the door too (a learned one only at reads: it is learned
    // from what is written).
    const vr = this.trustPolicy?.valueRange;
    if (vr && typeof vr === 'object') for (const c of batch.cases) c.value = clip(c.value, vr.min, vr.max);
    // Writes are serialised: each sees the memory as the previous one left it.
    const run = this.writeChain.then(() => this.writeNow(batch));
    this.writeChain = run.catch(() => undefined);
    if (!this.#writerKey) return run;
    return run.then((r) => ({ ...r, unverified }));
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
    const plan = planWrite(batch, target, this.storeView(target), {
      dim: this.dim,
      policy: this.policy,
      merge: this.merge,
      bySource: this.trustPolicy !== undefined,
      seq: this.seqCounter,
      clock: this.clock,
      rngState: this.rng.state,
      now: Date.now(),
    });
    return this.commitWrite(plan, n);
  }

  /** Per case: the stored id it merges into, −(2 + j) for an earlier case j of the batch, or −1. */
  private async mergeTargets(keys: Float32Array, cases: ValidCase[]): Promise<Int32Array> {
    const n = cases.length;
    const target = new Int32Array(n).fill(-1);
    if (!this.merge || n === 0) return target;
    const eps2 = this.merge.epsilon * this.merge.epsilon;
    const m = Math.max(1, this.merge.candidates ?? 8);
    const stored = await this.mergeCandidates(keys, n, m, eps2, cases);
    return batchMergeTargets(keys, cases, stored, this.dim, eps2, this.trustPolicy !== undefined);
  }

  /**
   * The read-only view of the store a write plan reads (writePlan.StoreView); the values of the
   * stored merge targets are read from the index at once (one call), others one by one.
   */
  private storeView(target: Int32Array): StoreView {
    const store = this.store;
    const targets = Int32Array.from(new Set(target.filter((t) => t >= 0)));
    const got = store.values(targets);
    const value = new Map<number, number>();
    targets.forEach((id, i) => value.set(id, got[i]));
    return {
      get size() {
        return store.size;
      },
      has: (id) => store.has(id),
      meta: (id) => store.meta(id),
      value: (id) => value.get(id) ?? store.value(id),
      idsInOrder: () => store.idsInOrder(),
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
        body: recordBody(plan.seq, plan.clock, plan.rngState, this.index.kernel, evicted, addedIds, [
          ...Array.from(changed, ([id, c]) => ({ id, value: c.value, meta: c.meta })),
          ...Array.from(addedIds, (id, r) => ({ id, value: addVals[r], meta: addMeta[r] })),
        ]),
        keys: addKeys,
      }),
    });

    // The metadata (checked by the plan and the index: cannot fail).
    this.store.apply({
      removed: evicted,
      updated: Array.from(changed, ([id, c]) => [id, c.meta] as const),
      added: { ids: added, meta: addMeta },
    });
    const freshId = new Map<number, number>();
    plan.keepFresh.forEach((k, r) => freshId.set(plan.fresh[k], added[r]));
    this.seqCounter = plan.seq;
    this.clock = plan.clock;
    this.rng.state = plan.rngState;

    const caseIds = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const t = plan.target[i];
      if (t === -1) caseIds[i] = freshId.get(i) ?? -1;
      else if (t <= -2) caseIds[i] = freshId.get(-(t + 2)) ?? -1;
      else caseIds[i] = this.store.has(t) ? t : -1;
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
        const old = this.store.values(ids);
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

  /** Ids as an Int32Array of known, distinct case ids (RangeError naming the first bad one). */
  private checkIds(ids: Int32Array, what: string): void {
    if (!(ids instanceof Int32Array)) throw new TypeError(`${what}: ids must be an Int32Array`);
    const seen = new Set<number>();
    for (let i = 0; i < ids.length; i++) {
      if (!this.store.has(ids[i])) throw new RangeError(`${what}: unknown case id ${ids[i]} (ids[${i}])`);
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
      return { ...this.store.meta(id), weight: w };
    });
    this.applyChange({
      record: () => {
        const vals = this.store.values(ids);
        return {
          body: recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, new Int32Array(0), new Int32Array(0),
            Array.from(ids, (id, i) => ({ id, value: vals[i], meta: metas[i] }))),
          keys: new Float32Array(0),
        };
      },
    });
    this.store.apply({ updated: Array.from(ids, (id, i) => [id, metas[i]] as const) });
    this.onWrite?.({ removed: new Int32Array(0), upserted: ids, addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }

  /** Remove cases by id (one native call); all or nothing. */
  remove(ids: Int32Array): void {
    this.checkConsistent();
    this.checkIds(ids, 'remove');
    this.applyChange({
      removed: ids,
      record: () => ({
        body: recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, ids, new Int32Array(0), []),
        keys: new Float32Array(0),
      }),
    });
    this.store.apply({ removed: ids });
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
  /** Set by load({ mmap: true }): the mapped keys file, its length and the CRC-32 its header gives. */
  mappedKeys?: { path: string; bytes: number; crc32: number };
  /** Set by load({ mmap: true }) of an unsigned snapshot: the mapped metadata file (as mappedKeys). */
  mappedMeta?: { path: string; bytes: number; crc32: number };

  /**
   * After load({ mmap: true }): reads the mapped files once, in chunks, off the event loop's
   * critical path (it yields between chunks), and checks what the load skipped: the keys' and
   * the metadata's CRC-32, the key rows (the index's first-search check) and every metadata row
   * not read yet. Throws the SnapshotError a load
   * would throw for a corrupted part. A memory loaded without mmap was checked at load: this
   * resolves at once.
   */
  async verifyMapped(): Promise<void> {
    const mk = this.mappedKeys;
    if (mk) {
      await verifyPartFile(mk);
      // The key rows: the index checks them at its first search (off the event loop).
      if (this.size > 0) {
        try {
          await this.index.search(new Float32Array(this.dim).fill(1), 1);
        } catch (err) {
          const msg = (err as Error)?.message ?? String(err);
          throw new SnapshotError(`${mk.path} (part 'keys'): ${msg.replace(/^MemoryIndex\.search: /, '')}`, mk.path, 'keys');
        }
      }
    }
    if (this.mappedMeta) await verifyPartFile(this.mappedMeta, 'meta');
    await this.store.checkAllAsync();
  }

  /** The former name of verifyMapped (it checks the metadata too now). */
  async verifyMappedKeys(): Promise<void> {
    await this.verifyMapped();
  }

  /** The whole memory as plain arrays (ids in insertion order). */
  toSnapshotData(): SnapshotData {
    const { keyRows: _rows, ...parts } = this.snapshotParts();
    return { ...parts, keys: this.getKeys(parts.ids) };
  }

  /** toSnapshotData without the keys (empty), which keyRows reads from the index in chunks. */
  private snapshotParts(): SnapshotData {
    const ids = this.ids();
    return {
      dim: this.dim,
      kernel: { ...this.index.kernel },
      options: { policy: this.policy, merge: this.merge ?? null },
      counters: { seq: this.seqCounter, clock: this.clock, rng: this.rng.state },
      ids,
      keys: new Float32Array(0),
      keyRows: (row0, rows) => this.getKeys(ids.subarray(row0, row0 + rows)),
      values: this.store.values(ids),
      meta: this.store.metaColumns(ids),
    };
  }

  /**
   * Check snapshot data as a memory needs it: shapes, ids, keys and values (snapshotRowProblem),
   * every metadata line (caseMetaProblem) and the counters. `genDir` names the files in errors
   * (a SnapshotError naming the file, the part and the row); without it, errors name the field.
   */
  static checkSnapshotData(data: SnapshotData, genDir?: string): void {
    checkSnapshotData(data, genDir);
  }

  /**
   * Rebuild a memory from snapshot data (one addWithIds call), after checkSnapshotData. The
   * memory takes copies: later changes to either do not reach the other.
   */
  static fromSnapshotData(data: SnapshotData, backend: 'native' | 'js' | 'auto' = 'auto', genDir?: string): EpisodicMemory {
    return EpisodicMemory.fromData(data, backend, genDir, false);
  }

  /** fromSnapshotData; `own`: the data is this memory's alone (a load), its columns are used in place. */
  private static fromData(data: SnapshotData, backend: 'native' | 'js' | 'auto', genDir: string | undefined, own: boolean): EpisodicMemory {
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
        ...(data.keysFile ? { indexBackend: 'cpu' as const } : {}),
      });
    } catch (err) {
      // Stored options the store refuses (a forged or damaged header): an error of the file.
      // Anything else (the addon failing to load, out of memory) is the environment's.
      if (genDir === undefined || !(err instanceof TypeError || err instanceof RangeError) || /^backend /.test(err.message)) throw err;
      const hfile = path.join(genDir, 'header.json');
      throw new SnapshotError(`${hfile} (part 'header'): the stored dim, kernel or options cannot be used: ${err.message}`, hfile, 'header');
    }
    const n = data.ids.length;
    if (data.keysFile) {
      // Mapped keys: the native CPU index maps the file (nothing of it is read here).
      if (!(mem.index instanceof MemoryIndex)) throw new RangeError('load: mmap needs the native index');
      try {
        mem.index.mapKeys(data.keysFile.path, data.ids, data.values);
      } catch (err) {
        const f = data.keysFile.path;
        if (err instanceof TypeError) throw err;
        throw new SnapshotError(`${f} (part 'keys') cannot be mapped: ${(err as Error)?.message ?? err}`, f, 'keys');
      }
      mem.mappedKeys = data.keysFile;
    } else if (n) mem.index.addWithIds(data.ids, data.keys, data.values);
    const cols = data.meta instanceof MetaColumns ? (own ? data.meta : data.meta.copyNumeric()) : MetaColumns.fromObjects(data.meta);
    const mf = data.metaFile;
    // Mapped metadata: the store checks each chunk of rows when it first reads one.
    const fail = mf
      ? (row: number, message: string): never => {
          throw new SnapshotError(`${mf.path} (part 'meta') row ${row} (id ${data.ids[row]}): ${message}`, mf.path, 'meta', row);
        }
      : undefined;
    mem.store.adopt(data.ids, cols, fail);
    if (mf) mem.mappedMeta = mf;
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
    // The keys go to the file in chunks (a memory mapped from a large snapshot is saved without
    // holding its keys in RAM).
    const res = writeSnapshot(dir, this.snapshotParts(), { ...opts, verify });
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
    const removed = Int32Array.from(b.removed.filter((id) => this.store.has(id)));
    if (removed.length) {
      this.index.remove(removed);
      this.store.apply({ removed });
    }
    const added = new Set(b.added);
    const byId = new Map(b.upserts.map((u) => [u.id, u]));
    const upd = b.upserts.filter((u) => !added.has(u.id) && this.store.has(u.id));
    if (upd.length) {
      this.index.updateValues(Int32Array.from(upd, (u) => u.id), Float32Array.from(upd, (u) => u.value));
      this.store.apply({ updated: upd.map((u) => [u.id, u.meta] as const) });
    }
    if (b.added.length) {
      const ids = Int32Array.from(b.added);
      const vals = Float32Array.from(b.added, (id) => byId.get(id)!.value);
      this.index.addWithIds(ids, rec.keys, vals);
      this.store.apply({ added: { ids, meta: b.added.map((id) => byId.get(id)!.meta) } });
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
    if (opts.mmap !== undefined && typeof opts.mmap !== 'boolean') throw new TypeError(`load: mmap must be true or false, got ${typeof opts.mmap}`);
    if (opts.mmap && opts.backend === 'js') throw new RangeError("load: mmap needs the native index (backend 'native' or 'auto'), not 'js'");
    const mapKeys = opts.mmap === true;
    const snap = readSnapshot(dir, untrusted === undefined ? { key, mapKeys, mapMeta: mapKeys } : { mapKeys, mapMeta: mapKeys });
    if (untrusted !== undefined) snap.data.meta = (snap.data.meta as MetaColumns).withSource(untrusted);
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
    const mem = EpisodicMemory.fromData(snap.data, opts.backend ?? 'auto', path.join(dir, generationName(snap.generation)), true);
    journal.records.forEach((rec, k) => {
      const part = `journal record ${k}`;
      const problem = journalRecordProblem(rec, mem.dim);
      if (problem) throw new SnapshotError(`${jfile} (part '${part}') is malformed: ${problem}`, jfile, part);
      try {
        mem.applyJournalRecord(rec);
      } catch (err) {
        throw new SnapshotError(`${jfile} (part '${part}') cannot be replayed: ${(err as Error)?.message ?? err}`, jfile, part);
      }
      const over = capacityProblem(mem.size, mem.policy);
      if (over) throw new SnapshotError(`${jfile} (part '${part}') is malformed: after replaying it the memory ${over}`, jfile, part);
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
      const m = (d.meta as MetaColumns).at(i);
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
    // A snapshot signed with the memory's own key is the key holder's: its write is authenticated
    // as it stands. One verified with another key (the caller's) is not: under authenticated
    // provenance its trusted sources are stored as unverified:<source>, like any unsigned write.
    const writer = this.#writerKey;
    const ownKey = verified && writer !== null && key !== undefined && writerKeyOf(key)!.equals(writer);
    let batch: ValidBatch;
    try {
      batch = validateBatch(cases, this.dim);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(batch, undefined, ownKey);
  }

  /**
   * Durable memory in dir: load it (replaying the journal) when a snapshot exists, else create
   * it with `options` and save generation 1; either way, journal every later write. `mmap`: an
   * existing snapshot is loaded memory-mapped (LoadOptions.mmap).
   */
  static open(dir: string, options: EpisodicMemoryOptions, opts: { fsync?: boolean; key?: string | Uint8Array; mmap?: boolean } = {}): EpisodicMemory {
    if (currentGeneration(dir) !== undefined) {
      return EpisodicMemory.load(dir, { backend: options.backend, attachJournal: true, fsync: opts.fsync, key: opts.key, trust: options.trust, mmap: opts.mmap });
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
    const values = Float64Array.from(this.store.values(ids));
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
          body: recordBody(this.seqCounter, this.clock, this.rng.state, this.index.kernel, new Int32Array(0), new Int32Array(0), []),
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



let defaultTrust: TrustPolicy | undefined;
function defaultPolicy(): TrustPolicy {
  return (defaultTrust ??= makeTrustPolicy({}));
}

/** Queries must be a Float32Array of whole rows (the index would refuse them later, less clearly). */
function checkQueries(queries: Float32Array, dim: number, what: string): void {
  if (!(queries instanceof Float32Array)) throw new TypeError(`${what}: queries must be a Float32Array (b × dim)`);
  if (queries.length % dim !== 0) throw new TypeError(`${what}: queries.length must be a multiple of dim (${dim}), got ${queries.length}`);
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
