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
import { Rng } from '../policy/rng';
import type { IndexLike } from './indexLike';
import { ReferenceIndex } from './referenceIndex';
import type { CaseInput, CaseMeta, EpisodicMemoryOptions, MergeRule, WritePolicy, WriteReport } from './types';
import * as path from 'path';
import {
  currentGeneration,
  journalName,
  readSnapshot,
  SnapshotError,
  writeSnapshot,
  type SaveOptions,
  type SnapshotData,
} from './snapshot';
import { JournalWriter, readJournal, type JournalRecord } from './journal';

export interface LoadOptions {
  /** Index backend for the loaded memory (default 'auto'). */
  backend?: 'native' | 'js' | 'auto';
  /** Replay the journal written after the snapshot (default true). */
  replayJournal?: boolean;
  /** Keep journalling subsequent writes into dir (default false). */
  attachJournal?: boolean;
  /** fsync each journal record (default true). */
  fsync?: boolean;
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
  /** Called after every applied write (the journal hooks in here). */
  onWrite?: (change: MemoryChange) => void;

  constructor(options: EpisodicMemoryOptions) {
    if (!(Number.isInteger(options.dim) && options.dim >= 1)) throw new RangeError(`dim must be an integer >= 1, got ${options.dim}`);
    this.dim = options.dim;
    this.policy = checkPolicy(options.policy ?? { kind: 'unbounded' });
    this.merge = checkMerge(options.merge);
    const made = createIndex(options.dim, options.kernel ?? { kernel: 'gaussian', bandwidth: 1 }, options.backend ?? 'auto');
    this.index = made.index;
    this.backend = made.backend;
    this.rng = new Rng(this.policy.kind === 'importance' ? this.policy.seed ?? 1 : 1);
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

  getCase(id: number): (CaseMeta & { id: number; value: number }) | undefined {
    const m = this.meta.get(id);
    return m ? { ...m, id, value: this.values.get(id)! } : undefined;
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
    cases: CaseInput[],
  ): Promise<{ best: Int32Array; bestD2: Float64Array }> {
    const best = new Int32Array(n).fill(-1);
    const bestD2 = new Float64Array(n).fill(Infinity);
    const size = this.index.size;
    if (size === 0 || n === 0) return { best, bestD2 };
    let pending = Array.from({ length: n }, (_, i) => i);
    let width = Math.min(m, size);
    for (;;) {
      const q = new Float32Array(pending.length * this.dim);
      pending.forEach((i, r) => q.set(keys.subarray(i * this.dim, (i + 1) * this.dim), r * this.dim));
      const hits = await this.index.search(q, width);
      const again: number[] = [];
      pending.forEach((i, r) => {
        const action = cases[i].action ?? '';
        let allWithin = true;
        for (let j = 0; j < width; j++) {
          const id = hits.ids[r * width + j];
          if (id < 0) {
            allWithin = false;
            break;
          }
          const d2 = hits.dist2[r * width + j];
          if (d2 > eps2) allWithin = false;
          const meta = this.meta.get(id);
          if (meta && meta.action === action && d2 <= eps2 && (d2 < bestD2[i] || (d2 === bestD2[i] && id < best[i]))) {
            best[i] = id;
            bestD2[i] = d2;
          }
        }
        if (best[i] < 0 && allWithin && width < size) again.push(i);
      });
      if (again.length === 0) return { best, bestD2 };
      pending = again;
      width = Math.min(size, width * 4);
    }
  }

  write(cases: CaseInput[]): Promise<WriteReport> {
    // Writes are serialised: each sees the memory as the previous one left it.
    const run = this.writeChain.then(() => this.writeNow(cases));
    this.writeChain = run.catch(() => undefined);
    return run;
  }

  private writeChain: Promise<unknown> = Promise.resolve();

  private async writeNow(cases: CaseInput[]): Promise<WriteReport> {
    const d = this.dim;
    const n = cases.length;
    const keys = new Float32Array(n * d);
    cases.forEach((c, i) => {
      if (c.key.length !== d) throw new RangeError(`cases[${i}].key has length ${c.key.length}, expected dim ${d}`);
      if (!Number.isFinite(c.value)) throw new RangeError(`cases[${i}].value must be finite, got ${c.value}`);
      keys.set(c.key, i * d);
    });
    for (let i = 0; i < keys.length; i++) if (!Number.isFinite(keys[i])) throw new RangeError(`cases[${Math.floor(i / d)}].key has a non-finite entry`);

    // 1. Merge targets (one batched search against stored cases).
    const target = new Int32Array(n).fill(-1); // stored id, or −(2 + j) for batch case j
    if (this.merge && n > 0) {
      const eps2 = this.merge.epsilon * this.merge.epsilon;
      const m = Math.max(1, this.merge.candidates ?? 8);
      const stored = await this.mergeCandidates(keys, n, m, eps2, cases);
      for (let i = 0; i < n; i++) {
        const action = cases[i].action ?? '';
        let best = stored.best[i];
        let bestD2 = stored.bestD2[i];
        // Earlier cases of this batch that were appended (not merged) also count as stored.
        for (let j = 0; j < i; j++) {
          if (target[j] !== -1 || (cases[j].action ?? '') !== action) continue;
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
    }

    // 2. Apply merges in order (values mirrored in JS; the index gets one updateValues).
    const now = Date.now();
    const pending: { value: number; visits: number; weight: number; tdError: number }[] = [];
    const mergedIds: number[] = [];
    const updated = new Set<number>();
    for (let i = 0; i < n; i++) {
      const c = cases[i];
      const t = target[i];
      if (t === -1) {
        pending[i] = { value: c.value, visits: 1, weight: 0, tdError: c.tdError ?? Math.abs(c.value) };
        pending[i].weight = c.weight ?? this.weightOf(1, c.value, pending[i].tdError);
        continue;
      }
      if (t <= -2) {
        const p = pending[-(t + 2)];
        const visits = p.visits + 1;
        const eta = this.mergeRate(visits);
        const err = c.value - p.value;
        p.value += eta * err;
        p.visits = visits;
        p.tdError = c.tdError ?? Math.abs(err);
        p.weight = c.weight ?? this.weightOf(visits, p.value, p.tdError);
        continue;
      }
      const meta = this.meta.get(t)!;
      const q = this.values.get(t)!;
      const visits = meta.visits + 1;
      const eta = this.mergeRate(visits);
      const err = c.value - q;
      const qn = Math.fround(q + eta * err);
      this.values.set(t, qn);
      meta.visits = visits;
      meta.weight = c.weight ?? this.weightOf(visits, qn, c.tdError ?? Math.abs(err));
      meta.touched = ++this.clock;
      updated.add(t);
      mergedIds.push(t);
    }

    // 3. New cases, then eviction by the write policy.
    const fresh: number[] = [];
    for (let i = 0; i < n; i++) if (target[i] === -1) fresh.push(i);
    const freshMeta: CaseMeta[] = fresh.map((i) => {
      const c = cases[i];
      return {
        state: c.state ?? '',
        action: c.action ?? '',
        visits: pending[i].visits,
        weight: pending[i].weight,
        episode: c.episode ?? -1,
        step: c.step ?? -1,
        source: c.source ?? '',
        time: c.time ?? now,
        seq: ++this.seqCounter,
        touched: ++this.clock,
      };
    });
    // A merge into a batch case refreshes that case's recency.
    for (let i = 0; i < n; i++) {
      if (target[i] <= -2) freshMeta[fresh.indexOf(-(target[i] + 2))].touched = ++this.clock;
    }
    const { evictStored, dropFresh } = this.chooseEvictions(freshMeta);

    const keepFresh = fresh.map((_, k) => k).filter((k) => !dropFresh.has(k));
    const evicted = Int32Array.from(evictStored);
    if (evicted.length) {
      this.index.remove(evicted);
      for (const id of evicted) {
        this.meta.delete(id);
        this.values.delete(id);
        updated.delete(id);
      }
    }
    if (updated.size) {
      const ids = Int32Array.from(updated);
      this.index.updateValues(ids, Float32Array.from(ids, (id) => this.values.get(id)!));
    }
    const addKeys = new Float32Array(keepFresh.length * d);
    const addVals = new Float32Array(keepFresh.length);
    keepFresh.forEach((k, r) => {
      addKeys.set(keys.subarray(fresh[k] * d, (fresh[k] + 1) * d), r * d);
      addVals[r] = pending[fresh[k]].value;
    });
    const added = keepFresh.length ? this.index.add(addKeys, addVals) : new Int32Array(0);
    const freshId = new Map<number, number>();
    keepFresh.forEach((k, r) => {
      this.meta.set(added[r], freshMeta[k]);
      this.values.set(added[r], addVals[r]);
      freshId.set(fresh[k], added[r]);
    });

    const caseIds = new Int32Array(n).fill(-1);
    for (let i = 0; i < n; i++) {
      const t = target[i];
      if (t === -1) caseIds[i] = freshId.get(i) ?? -1;
      else if (t <= -2) caseIds[i] = freshId.get(-(t + 2)) ?? -1;
      else caseIds[i] = this.meta.has(t) ? t : -1;
    }
    const report: WriteReport = { added, merged: Int32Array.from(mergedIds), evicted, caseIds };
    if (this.onWrite) {
      this.onWrite({
        removed: evicted,
        upserted: Int32Array.from([...updated, ...added]),
        addedKeys: addKeys,
        added,
      });
    }
    return report;
  }

  /**
   * Which stored cases to evict and which new ones never to store, so that at most the
   * capacity remains. Replay: oldest inserted first. Window: least recently written first.
   * Importance: lowest weight first (ties: oldest), or sampled ∝ 1/w.
   */
  private chooseEvictions(freshMeta: CaseMeta[]): { evictStored: number[]; dropFresh: Set<number> } {
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
    for (const [id, m] of this.meta) pool.push({ ref: id, m });
    freshMeta.forEach((m, k) => pool.push({ ref: -1 - k, m }));
    if (p.kind === 'importance' && p.sample) {
      while (excess-- > 0) {
        const w = pool.map((e) => 1 / Math.max(e.m.weight, 1e-12));
        const k = this.rng.categorical(w);
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

  /** Set per-case importance weights (e.g. fresh |TD errors|). */
  setWeights(ids: Int32Array, weights: ArrayLike<number>): void {
    ids.forEach((id, i) => {
      const m = this.meta.get(id);
      if (!m) throw new RangeError(`unknown case id ${id}`);
      m.weight = weights[i];
    });
    if (this.onWrite) this.onWrite({ removed: new Int32Array(0), upserted: ids, addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }

  /** Remove cases by id (one native call). */
  remove(ids: Int32Array): void {
    for (const id of ids) if (!this.meta.has(id)) throw new RangeError(`unknown case id ${id}`);
    if (ids.length) this.index.remove(ids);
    for (const id of ids) {
      this.meta.delete(id);
      this.values.delete(id);
    }
    if (this.onWrite) this.onWrite({ removed: ids, upserted: new Int32Array(0), addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }

  // ---------- persistence (docs/memory-format.md) ----------

  private journal?: { dir: string; writer: JournalWriter; fsync: boolean };
  /** Set by load / open: what was read. */
  loadReport?: LoadReport;

  private metaLine(m: CaseMeta): Record<string, unknown> {
    return { ...m };
  }

  /** The whole memory as plain arrays (ids in insertion order). */
  toSnapshotData(): SnapshotData {
    const ids = this.ids();
    return {
      dim: this.dim,
      kernel: { ...this.index.kernel },
      options: { policy: this.policy, merge: this.merge ?? null },
      counters: { seq: this.seqCounter, clock: this.clock },
      ids,
      keys: this.getKeys(ids),
      values: Float32Array.from(ids, (id) => this.values.get(id)!),
      meta: [...this.meta.values()].map((m) => this.metaLine(m)),
    };
  }

  /** Rebuild a memory from snapshot data (one addWithIds call). */
  static fromSnapshotData(data: SnapshotData, backend: 'native' | 'js' | 'auto' = 'auto'): EpisodicMemory {
    const opts = data.options as { policy?: WritePolicy; merge?: MergeRule | null };
    const mem = new EpisodicMemory({
      dim: data.dim,
      kernel: data.kernel as unknown as KernelSettings,
      policy: opts.policy,
      merge: opts.merge ?? undefined,
      backend,
    });
    const n = data.ids.length;
    for (let i = 1; i < n; i++) {
      if (data.ids[i] <= data.ids[i - 1]) throw new SnapshotError(`snapshot ids are not strictly increasing at position ${i}`, undefined, 'ids');
    }
    if (n) mem.index.addWithIds(data.ids, data.keys, data.values);
    for (let i = 0; i < n; i++) {
      mem.meta.set(data.ids[i], { ...(data.meta[i] as CaseMeta) });
      mem.values.set(data.ids[i], data.values[i]);
    }
    mem.seqCounter = data.counters.seq ?? 0;
    mem.clock = data.counters.clock ?? 0;
    return mem;
  }

  /**
   * Save atomically into dir as a new generation (the previous one stays loadable until the
   * switch). When this memory journals into the same dir, the journal restarts after it.
   */
  save(dir: string, opts: SaveOptions = {}): { generation: number; path: string } {
    const res = writeSnapshot(dir, this.toSnapshotData(), opts);
    if (this.journal && path.resolve(this.journal.dir) === path.resolve(dir)) {
      this.journal.writer.close();
      this.journal.writer = JournalWriter.open(path.join(dir, journalName(res.generation)), res.generation, { fsync: this.journal.fsync });
    }
    return res;
  }

  /** Journal every later write into dir (which must hold a snapshot: save first). */
  attachJournal(dir: string, opts: { fsync?: boolean; validBytes?: number } = {}): void {
    const gen = currentGeneration(dir);
    if (gen === undefined) throw new SnapshotError(`attachJournal: ${dir} holds no snapshot; save() first`, dir, 'CURRENT');
    this.detachJournal();
    const fsync = opts.fsync ?? true;
    const writer = JournalWriter.open(path.join(dir, journalName(gen)), gen, { fsync, validBytes: opts.validBytes });
    this.journal = { dir, writer, fsync };
    this.onWrite = (change) => this.journalChange(change);
  }

  detachJournal(): void {
    if (this.journal) {
      this.journal.writer.close();
      this.journal = undefined;
      this.onWrite = undefined;
    }
  }

  private journalChange(change: MemoryChange): void {
    if (!this.journal) return;
    const upserts = Array.from(change.upserted, (id) => ({ id, value: this.values.get(id)!, meta: this.metaLine(this.meta.get(id)!) }));
    this.journal.writer.append({
      body: {
        seq: this.seqCounter,
        clock: this.clock,
        kernel: this.index.kernel,
        removed: Array.from(change.removed),
        added: Array.from(change.added),
        upserts,
      },
      keys: change.addedKeys,
    });
  }

  private applyJournalRecord(rec: JournalRecord): void {
    const b = rec.body as {
      seq: number;
      clock: number;
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
    const snap = readSnapshot(dir);
    let journal = { records: [] as JournalRecord[], validBytes: 0, tornBytes: 0 };
    const jfile = path.join(dir, journalName(snap.generation));
    if (opts.replayJournal ?? true) journal = readJournal(jfile, snap.generation);
    const mem = EpisodicMemory.fromSnapshotData(snap.data, opts.backend ?? 'auto');
    for (const rec of journal.records) mem.applyJournalRecord(rec);
    mem.loadReport = { generation: snap.generation, journalRecords: journal.records.length, journalTornBytes: journal.tornBytes };
    if (opts.attachJournal) {
      mem.attachJournal(dir, { fsync: opts.fsync, validBytes: journal.validBytes > 0 ? journal.validBytes : undefined });
    }
    return mem;
  }

  /**
   * Durable memory in dir: load it (replaying the journal) when a snapshot exists, else create
   * it with `options` and save generation 1; either way, journal every later write.
   */
  static open(dir: string, options: EpisodicMemoryOptions, opts: { fsync?: boolean } = {}): EpisodicMemory {
    if (currentGeneration(dir) !== undefined) {
      return EpisodicMemory.load(dir, { backend: options.backend, attachJournal: true, fsync: opts.fsync });
    }
    const mem = new EpisodicMemory(options);
    mem.save(dir, { fsync: opts.fsync });
    mem.attachJournal(dir, { fsync: opts.fsync });
    return mem;
  }

  /** Save into the journal's dir (compacting the journal into a new generation). */
  checkpoint(): { generation: number; path: string } {
    if (!this.journal) throw new Error('checkpoint: no journal attached (use EpisodicMemory.open or attachJournal)');
    return this.save(this.journal.dir, { fsync: this.journal.fsync });
  }

  // ---------- reads ----------

  /** Q̂ and λ per query (MATH §3). */
  estimate(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }) {
    return this.index.estimate(queries, m, opts);
  }

  search(queries: Float32Array, m: number) {
    return this.index.search(queries, m);
  }

  /**
   * Q̂ and λ on the calling thread when the read is small (queries × cases × dim below
   * `syncWork`), else on a worker thread: a per-step read of a few dozen keys costs less than
   * the thread hop, and a large one must not block the event loop.
   */
  estimateAuto(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }, syncWork = 2e8) {
    const work = (queries.length / this.dim) * this.size * this.dim;
    return work <= syncWork ? Promise.resolve(this.index.estimateSync(queries, m, opts)) : this.index.estimate(queries, m, opts);
  }

  searchAuto(queries: Float32Array, m: number, syncWork = 2e8) {
    const work = (queries.length / this.dim) * this.size * this.dim;
    return work <= syncWork ? Promise.resolve(this.index.searchSync(queries, m)) : this.index.search(queries, m);
  }

  /**
   * Parzen retrieval prior with the void case over the top-M (MATH §4), per query; with
   * reportDropped, the mass the full estimate puts outside the top-M (a second, full search).
   */
  async retrievalPrior(queries: Float32Array, m: number, voidWeight: number, opts: { reportDropped?: boolean } = {}): Promise<ParzenPrior[]> {
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
   * Empirical coverage radius ε(M) = max over the query states of the distance to the nearest
   * case key (MATH §13), with the per-query distances. Infinity for an empty memory.
   */
  async coverageRadius(queries: Float32Array): Promise<{ radius: number; distances: Float64Array }> {
    const b = queries.length / this.dim;
    const distances = new Float64Array(b).fill(Infinity);
    if (this.size > 0 && b > 0) {
      const hits = await this.index.search(queries, 1);
      for (let q = 0; q < b; q++) distances[q] = Math.sqrt(Math.max(0, hits.dist2[q]));
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

  /** Change the kernel (journalled like a write). */
  setKernel(kernel: KernelSettings): void {
    this.index.setKernel(kernel);
    if (this.onWrite) this.onWrite({ removed: new Int32Array(0), upserted: new Int32Array(0), addedKeys: new Float32Array(0), added: new Int32Array(0) });
  }
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

/** What one write changed: the journal records it. */
export interface MemoryChange {
  removed: Int32Array;
  /** Ids whose value or metadata changed, or that were added. */
  upserted: Int32Array;
  /** Ids of the newly added cases, and their keys (added.length × dim). */
  added: Int32Array;
  addedKeys: Float32Array;
}
