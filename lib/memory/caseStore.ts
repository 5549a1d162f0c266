/**
 * The cases of an episodic memory as a structure of arrays. Values have one owner, the index
 * (reads go through its getValues, one call per batch of ids); everything else about a case
 * (CaseMeta) lives here in typed columns indexed by a dense slot, with an id → slot map.
 * Slots are handed out in insertion order and never reused before a compaction, which keeps
 * the live slots in insertion order (the order of ids(), snapshots and the replay policy);
 * columns grow by doubling and are compacted (order kept) when more than half are dead.
 * The strings `action` and `source` are interned to small ints (few distinct ones); `state`,
 * nearly one per case, is kept as a string column.
 *
 * A store can adopt a snapshot's metadata columns (adopt): the numeric columns are used as
 * they are (a mapped file's pages are read as they are touched, written copy-on-write), the
 * states are decoded from the snapshot's bytes when read, and the id → slot table is dense, so
 * adopting n cases costs one pass over the ids. Adopted rows not checked yet (a mapped load) are
 * checked in chunks the first time a row of the chunk is read (checkAll: every chunk).
 */
import type { IndexLike } from './indexLike';
import { MetaColumns, type NumericColumns, numericRowProblem } from './metaColumns';
import type { CaseMeta } from './types';

/**
 * id → slot: a dense table (slot + 1, 0 for none) for ids below a few times the count, a Map for
 * ids above it, so a memory of n dense ids needs no n-entry Map.
 */
export class IdSlots {
  private dense = new Int32Array(0);
  private readonly sparse = new Map<number, number>();
  private n = 0;

  get size(): number {
    return this.n;
  }

  get(id: number): number | undefined {
    if (id >= 0 && id < this.dense.length) {
      const s = this.dense[id];
      return s ? s - 1 : undefined;
    }
    return this.sparse.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Map id (an integer >= 0) to slot s. */
  set(id: number, s: number): void {
    if (id >= this.dense.length && id < 4 * this.n + 4096) this.growDense(id);
    if (id < this.dense.length) {
      if (!this.dense[id]) this.n++;
      this.dense[id] = s + 1;
    } else {
      if (!this.sparse.has(id)) this.n++;
      this.sparse.set(id, s);
    }
  }

  delete(id: number): void {
    if (id >= 0 && id < this.dense.length) {
      if (this.dense[id]) this.n--;
      this.dense[id] = 0;
    } else if (this.sparse.delete(id)) this.n--;
  }

  clear(): void {
    this.dense = new Int32Array(0);
    this.sparse.clear();
    this.n = 0;
  }

  /**
   * Map ids[i] to slot first + i, for new ids strictly increasing (a snapshot's): one pass into
   * the dense table when they fit one (sized to the largest id only when the ids are dense enough).
   */
  setIncreasing(ids: Int32Array, first: number): void {
    const n = ids.length;
    if (n === 0) return;
    const maxId = ids[n - 1];
    if (maxId >= this.dense.length && maxId < 4 * (this.n + n) + 4096) this.growDense(maxId);
    if (maxId < this.dense.length && ids[0] >= 0) {
      const dense = this.dense;
      let fresh = 0;
      for (let i = 0; i < n; i++) {
        const id = ids[i];
        if (!dense[id]) fresh++;
        dense[id] = first + i + 1;
      }
      this.n += fresh;
    } else {
      for (let i = 0; i < n; i++) this.set(ids[i], first + i);
    }
  }

  private growDense(id: number): void {
    let cap = Math.max(1024, this.dense.length * 2);
    while (cap <= id) cap *= 2;
    const next = new Int32Array(cap);
    next.set(this.dense);
    this.dense = next;
    for (const [k, s] of this.sparse) {
      if (k < cap) {
        next[k] = s + 1;
        this.sparse.delete(k);
      }
    }
  }
}

/** Rows per lazily checked chunk of adopted rows. */
const CHECK_CHUNK_BITS = 16;

/** Strings ↔ small ints (codes are never reused: a table of the distinct strings ever seen). */
function copyInto<T extends Float64Array | Int32Array>(to: T, from: T, n: number): T {
  to.set(from.subarray(0, n));
  return to;
}

export class Interner {
  private readonly codes = new Map<string, number>();
  private readonly table: string[] = [];

  code(s: string): number {
    let c = this.codes.get(s);
    if (c === undefined) {
      c = this.table.length;
      this.codes.set(s, c);
      this.table.push(s);
    }
    return c;
  }

  /** The code of s, or −1 when s was never interned. */
  find(s: string): number {
    return this.codes.get(s) ?? -1;
  }

  string(code: number): string {
    return this.table[code];
  }

  /** Every string, by code. */
  get strings(): readonly string[] {
    return this.table;
  }

  get size(): number {
    return this.table.length;
  }
}

/** A change to apply all or nothing (see CaseStore.apply). */
export interface StoreChange {
  /** Live ids to drop. */
  removed?: ArrayLike<number>;
  /** Live ids whose metadata is replaced (their slot, hence their order, is kept). */
  updated?: Iterable<readonly [number, CaseMeta]>;
  /** New ids, appended in this order, with their metadata. */
  added?: { ids: ArrayLike<number>; meta: readonly CaseMeta[] };
}

const INITIAL = 16;

export class CaseStore {
  /** Slot → id (−1: dead slot). */
  private slotId: Int32Array;
  private readonly slotOf = new IdSlots();
  /** Slots used so far (live and dead); live = slotOf.size. */
  private used = 0;
  // Columns, by slot.
  private visits: Float64Array;
  private weight: Float64Array;
  private episode: Float64Array;
  private step: Float64Array;
  private time: Float64Array;
  private seq: Float64Array;
  private touched: Float64Array;
  private actionCode: Int32Array;
  private sourceCode: Int32Array;
  /** States of slots >= baseRows (index s − baseRows); below, adopted columns unless edited. */
  private tail: string[] = [];
  private base?: MetaColumns;
  private readonly baseEdits = new Map<number, string>();
  /** Adopted rows not checked yet: a flag per chunk, and how a bad row is reported. */
  private unchecked?: { rows: number; done: Uint8Array; left: number; fail: (row: number, message: string) => never };
  readonly actions = new Interner();
  readonly sources = new Interner();
  /** @internal Test hook state: values reads report instead of the index's (see corruptForTest). */
  private valueOverride?: Map<number, number>;

  constructor(private readonly index: Pick<IndexLike, 'getValues'>) {
    this.slotId = new Int32Array(INITIAL).fill(-1);
    this.visits = new Float64Array(INITIAL);
    this.weight = new Float64Array(INITIAL);
    this.episode = new Float64Array(INITIAL);
    this.step = new Float64Array(INITIAL);
    this.time = new Float64Array(INITIAL);
    this.seq = new Float64Array(INITIAL);
    this.touched = new Float64Array(INITIAL);
    this.actionCode = new Int32Array(INITIAL);
    this.sourceCode = new Int32Array(INITIAL);
  }

  get size(): number {
    return this.slotOf.size;
  }

  /** Used slots (live + dead since the last compaction): for tests of compaction. */
  get slotsUsed(): number {
    return this.used;
  }

  /** Allocated slots (live + dead + free): for tests of growth and compaction. */
  get slotCapacity(): number {
    return this.slotId.length;
  }

  has(id: number): boolean {
    return this.slotOf.has(id);
  }

  /** Live ids in insertion order. */
  ids(): Int32Array {
    const out = new Int32Array(this.slotOf.size);
    let o = 0;
    for (let s = 0; s < this.used; s++) if (this.slotId[s] >= 0) out[o++] = this.slotId[s];
    return out;
  }

  /** Live ids in insertion order, lazily (the store must not change while iterating). */
  *idsInOrder(): IterableIterator<number> {
    for (let s = 0; s < this.used; s++) if (this.slotId[s] >= 0) yield this.slotId[s];
  }

  private slot(id: number): number {
    const s = this.slotOf.get(id);
    if (s === undefined) throw new RangeError(`case store: unknown case id ${id}`);
    const u = this.unchecked;
    if (u && s < u.rows && !u.done[s >>> CHECK_CHUNK_BITS]) this.checkChunk(s >>> CHECK_CHUNK_BITS);
    return s;
  }

  /**
   * Adopt a snapshot's metadata for ids (strictly increasing, one per row of cols) into this
   * fresh store: the columns are used in place (see the class comment). With `fail`, rows are
   * checked lazily (mapped loads): fail(row, problem) is called, and must throw, for the first
   * bad row of a chunk when the chunk is first read; otherwise the caller checked them.
   */
  adopt(ids: Int32Array, cols: MetaColumns, fail?: (row: number, message: string) => never): void {
    if (this.used !== 0 || this.actions.size !== 0 || this.sources.size !== 0) throw new Error('case store: adopt needs a fresh store');
    const n = ids.length;
    if (cols.count !== n) throw new RangeError(`case store: ${n} ids but ${cols.count} metadata rows`);
    let cap = cols.capacity;
    const own = cap < Math.max(n, INITIAL);
    if (own) cap = Math.max(n, INITIAL);
    this.takeColumns(
      cols,
      (a) => (own ? copyInto(new Float64Array(cap), a, n) : a.subarray(0, cap)),
      (a) => (own ? copyInto(new Int32Array(cap), a, n) : a.subarray(0, cap)),
    );
    for (const a of cols.actions) this.actions.code(a);
    for (const x of cols.sources) this.sources.code(x);
    this.slotId = new Int32Array(cap).fill(-1, n);
    this.slotId.set(ids);
    this.slotOf.setIncreasing(ids, 0);
    this.used = n;
    this.base = cols;
    this.tail = [];
    this.baseEdits.clear();
    const chunks = Math.ceil(n / (1 << CHECK_CHUNK_BITS));
    this.unchecked = fail && n ? { rows: n, done: new Uint8Array(chunks), left: chunks, fail } : undefined;
  }

  /** Adopted rows not checked yet (0 when every row was checked). */
  get uncheckedRows(): number {
    const u = this.unchecked;
    if (!u) return 0;
    let rows = 0;
    for (let k = 0; k < u.done.length; k++) if (!u.done[k]) rows += Math.min(u.rows, (k + 1) << CHECK_CHUNK_BITS) - (k << CHECK_CHUNK_BITS);
    return rows;
  }

  /** Check every adopted row not checked yet (throws as the lazy checks do). */
  checkAll(): void {
    const u = this.unchecked;
    if (!u) return;
    for (let k = 0; k < u.done.length; k++) if (!u.done[k]) this.checkChunk(k);
  }

  /**
   * Check the unchecked chunks one by one, yielding to the event loop between them (a memory's
   * verifyMapped).
   */
  async checkAllAsync(): Promise<void> {
    for (;;) {
      const u = this.unchecked;
      if (!u) return;
      const k = u.done.indexOf(0);
      if (k < 0) return;
      this.checkChunk(k);
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** Check the adopted rows of chunk k that are still live and unedited. */
  private checkChunk(k: number): void {
    const u = this.unchecked!;
    const cols = this.columns();
    const end = Math.min(u.rows, (k + 1) << CHECK_CHUNK_BITS);
    for (let s = k << CHECK_CHUNK_BITS; s < end; s++) {
      if (this.slotId[s] < 0) continue;
      const p = numericRowProblem(cols, s, this.actions.size, this.sources.size) ?? (this.baseEdits.has(s) ? undefined : this.base!.stateProblem(s));
      if (p) u.fail(s, p);
    }
    u.done[k] = 1;
    if (--u.left === 0) this.unchecked = undefined;
  }

  /** Slots whose states are the adopted columns' (unless edited): all of them, or none. */
  private get baseRows(): number {
    return this.base ? this.base.count : 0;
  }

  private getState(s: number): string {
    if (s >= this.baseRows) return this.tail[s - this.baseRows];
    return this.baseEdits.get(s) ?? this.base!.state(s);
  }

  private setState(s: number, v: string): void {
    if (s >= this.baseRows) this.tail[s - this.baseRows] = v;
    else this.baseEdits.set(s, v);
  }

  /** The metadata of a live case, as a fresh object (fields in CaseMeta's order). */
  meta(id: number): CaseMeta {
    const s = this.slot(id);
    return {
      state: this.getState(s),
      action: this.actions.string(this.actionCode[s]),
      visits: this.visits[s],
      weight: this.weight[s],
      episode: this.episode[s],
      step: this.step[s],
      source: this.sources.string(this.sourceCode[s]),
      time: this.time[s],
      seq: this.seq[s],
      touched: this.touched[s],
    };
  }

  action(id: number): string {
    return this.actions.string(this.actionCode[this.slot(id)]);
  }

  source(id: number): string {
    return this.sources.string(this.sourceCode[this.slot(id)]);
  }

  /** Interned source code of a live case (compare with sources.find(name)). */
  sourceOf(id: number): number {
    return this.sourceCode[this.slot(id)];
  }

  /**
   * The metadata of live cases `ids`, in that order, as columns (a snapshot's meta part; the code
   * tables are the store's, every string it ever interned). No object per case.
   */
  metaColumns(ids: Int32Array): MetaColumns {
    const n = ids.length;
    const slots = new Int32Array(n);
    for (let i = 0; i < n; i++) slots[i] = this.slot(ids[i]);
    const src = this.columns();
    const pick = <T extends Float64Array | Int32Array>(a: T, out: T): T => {
      for (let i = 0; i < n; i++) out[i] = a[slots[i]];
      return out;
    };
    const f = (a: Float64Array) => pick(a, new Float64Array(n));
    const cols: NumericColumns = {
      visits: f(src.visits), weight: f(src.weight), episode: f(src.episode), step: f(src.step), time: f(src.time), seq: f(src.seq),
      touched: f(src.touched), action: pick(src.action, new Int32Array(n)), source: pick(src.source, new Int32Array(n)),
    };
    return MetaColumns.fromParts(n, cols, this.actions.strings.slice(), this.sources.strings.slice(), (i) => this.getState(slots[i]));
  }

  /** Weights of live cases into out (default a new Float64Array). */
  weights(ids: ArrayLike<number>, out: Float64Array = new Float64Array(ids.length)): Float64Array {
    if (out.length < ids.length) throw new RangeError(`case store: out holds ${out.length} entries, need ${ids.length}`);
    for (let i = 0; i < ids.length; i++) out[i] = this.weight[this.slot(ids[i])];
    return out;
  }

  /** Stored values of live cases (one index call) into out (default a new Float32Array). */
  values(ids: Int32Array, out?: Float32Array): Float32Array {
    if (out && out.length < ids.length) throw new RangeError(`case store: out holds ${out.length} entries, need ${ids.length}`);
    for (let i = 0; i < ids.length; i++) this.slot(ids[i]);
    const got = ids.length ? this.index.getValues(ids) : new Float32Array(0);
    const res = out ?? got;
    if (out) out.set(got.subarray(0, ids.length));
    const ov = this.valueOverride;
    if (ov) for (let i = 0; i < ids.length; i++) if (ov.has(ids[i])) res[i] = ov.get(ids[i])!;
    return res;
  }

  /** Stored value of one live case (one index call: batch reads through values()). */
  value(id: number): number {
    return this.values(Int32Array.of(id))[0];
  }

  /**
   * Apply a change all or nothing: every id is checked first (removed and updated ids live and
   * distinct, added ids new and distinct, one meta per added id), so a bad change throws a
   * RangeError naming the id and leaves the store as it was. Removals happen first, then
   * updates, then additions (an id removed here may be added back: it goes to the end).
   */
  apply(ch: StoreChange): void {
    const removed = ch.removed ?? [];
    const updated = ch.updated ? Array.from(ch.updated) : [];
    const addIds = ch.added?.ids ?? [];
    const addMeta = ch.added?.meta ?? [];
    if (addIds.length !== addMeta.length) throw new RangeError(`case store: ${addIds.length} added ids but ${addMeta.length} metadata entries`);
    const gone = new Set<number>();
    for (let i = 0; i < removed.length; i++) {
      const id = removed[i];
      if (!this.slotOf.has(id)) throw new RangeError(`case store: cannot remove unknown case id ${id}`);
      if (gone.has(id)) throw new RangeError(`case store: case id ${id} removed twice`);
      gone.add(id);
    }
    const seen = new Set<number>();
    for (const [id] of updated) {
      if (!this.slotOf.has(id) || gone.has(id)) throw new RangeError(`case store: cannot update unknown case id ${id}`);
      if (seen.has(id)) throw new RangeError(`case store: case id ${id} updated twice`);
      seen.add(id);
    }
    const fresh = new Set<number>();
    for (let i = 0; i < addIds.length; i++) {
      const id = addIds[i];
      if (!Number.isInteger(id) || id < 0) throw new RangeError(`case store: added id ${id} must be an integer >= 0`);
      if ((this.slotOf.has(id) && !gone.has(id)) || fresh.has(id)) throw new RangeError(`case store: case id ${id} added twice`);
      fresh.add(id);
    }
    // A compaction moves the rows: unchecked adopted rows are checked before (it may throw).
    if (this.unchecked && removed.length && this.wouldCompact(this.slotOf.size - removed.length)) this.checkAll();
    // Checked: nothing below throws.
    for (let i = 0; i < removed.length; i++) this.drop(removed[i]);
    if (removed.length) this.maybeCompact();
    for (const [id, m] of updated) this.put(this.slotOf.get(id)!, m);
    if (addIds.length) {
      this.reserve(addIds.length);
      for (let i = 0; i < addIds.length; i++) {
        const s = this.used++;
        this.slotId[s] = addIds[i];
        this.slotOf.set(addIds[i], s);
        this.put(s, addMeta[i]);
      }
    }
  }

  /** Drop every case. */
  clear(): void {
    this.slotOf.clear();
    this.slotId.fill(-1, 0, this.used);
    this.tail = [];
    this.base = undefined;
    this.baseEdits.clear();
    this.unchecked = undefined;
    this.used = 0;
    this.valueOverride = undefined;
  }

  /**
   * @internal Test hook, for tests of save's verification only: make value reads of `id`
   * report `value` (undefined: the index's value again) and/or set its weight column, without
   * the checks of a write. The index itself refuses non-finite values, so this is the only way
   * to present save with a state it must refuse. Never use it outside tests.
   */
  corruptForTest(id: number, c: { value?: number; weight?: number }): void {
    const s = this.slot(id);
    if ('value' in c) {
      if (c.value === undefined) this.valueOverride?.delete(id);
      else (this.valueOverride ??= new Map()).set(id, c.value);
    }
    if (c.weight !== undefined) this.weight[s] = c.weight;
  }

  private put(s: number, m: CaseMeta): void {
    this.setState(s, m.state);
    this.actionCode[s] = this.actions.code(m.action);
    this.visits[s] = m.visits;
    this.weight[s] = m.weight;
    this.episode[s] = m.episode;
    this.step[s] = m.step;
    this.sourceCode[s] = this.sources.code(m.source);
    this.time[s] = m.time;
    this.seq[s] = m.seq;
    this.touched[s] = m.touched;
  }

  private drop(id: number): void {
    const s = this.slotOf.get(id)!;
    this.slotOf.delete(id);
    this.slotId[s] = -1;
    // a dead slot's state is never read again: free it
    if (s >= this.baseRows) this.tail[s - this.baseRows] = '';
    else this.baseEdits.delete(s);
    this.valueOverride?.delete(id);
  }

  /** Compact when over half of the used slots are dead. */
  private maybeCompact(): void {
    if (this.wouldCompact(this.slotOf.size)) this.compact();
  }

  /** Whether maybeCompact compacts when `live` cases are left in the used slots. */
  private wouldCompact(live: number): boolean {
    const dead = this.used - live;
    return dead > live && dead >= INITIAL;
  }

  /** Room for `extra` more slots, growing the columns by doubling. */
  private reserve(extra: number): void {
    const want = this.used + extra;
    if (want <= this.slotId.length) return;
    let cap = this.slotId.length;
    while (cap < want) cap *= 2;
    this.resize(cap);
  }

  /** Move the live slots to the front, in order. */
  private compact(): void {
    this.checkAll();
    // The states move into one plain column (the adopted columns' bytes are left behind).
    const states: string[] = [];
    let o = 0;
    for (let s = 0; s < this.used; s++) {
      const id = this.slotId[s];
      if (id < 0) continue;
      if (o !== s) {
        this.slotId[o] = id;
        this.slotOf.set(id, o);
        this.visits[o] = this.visits[s];
        this.weight[o] = this.weight[s];
        this.episode[o] = this.episode[s];
        this.step[o] = this.step[s];
        this.time[o] = this.time[s];
        this.seq[o] = this.seq[s];
        this.touched[o] = this.touched[s];
        this.actionCode[o] = this.actionCode[s];
        this.sourceCode[o] = this.sourceCode[s];
      }
      states.push(this.getState(s));
      o++;
    }
    this.slotId.fill(-1, o, this.used);
    this.tail = states;
    this.base = undefined;
    this.baseEdits.clear();
    this.used = o;
  }

  private resize(cap: number): void {
    const ids = new Int32Array(cap).fill(-1);
    ids.set(this.slotId.subarray(0, this.used));
    this.slotId = ids;
    this.takeColumns(this.columns(), (a) => copyInto(new Float64Array(cap), a, this.used), (a) => copyInto(new Int32Array(cap), a, this.used));
  }

  /** The numeric columns (by slot), under MetaColumns' names. */
  private columns(): NumericColumns {
    return { visits: this.visits, weight: this.weight, episode: this.episode, step: this.step, time: this.time, seq: this.seq,
      touched: this.touched, action: this.actionCode, source: this.sourceCode };
  }

  /** Make f64 / i32 of src's columns this store's columns. */
  private takeColumns(src: NumericColumns, f64: (a: Float64Array) => Float64Array, i32: (a: Int32Array) => Int32Array): void {
    this.visits = f64(src.visits);
    this.weight = f64(src.weight);
    this.episode = f64(src.episode);
    this.step = f64(src.step);
    this.time = f64(src.time);
    this.seq = f64(src.seq);
    this.touched = f64(src.touched);
    this.actionCode = i32(src.action);
    this.sourceCode = i32(src.source);
  }
}
