/**
 * The cases of an episodic memory as a structure of arrays. Values have one owner, the index
 * (reads go through its getValues, one call per batch of ids); everything else about a case
 * (CaseMeta) lives here in typed columns indexed by a dense slot, with an id → slot map.
 * Slots are handed out in insertion order and never reused before a compaction, which keeps
 * the live slots in insertion order (the order of ids(), snapshots and the replay policy);
 * columns grow by doubling and are compacted (order kept) when more than half are dead.
 * The strings `action` and `source` are interned to small ints (few distinct ones); `state`,
 * nearly one per case, is kept as a string column.
 */
import type { IndexLike } from './indexLike';
import type { CaseMeta } from './types';

/** Strings ↔ small ints (codes are never reused: a table of the distinct strings ever seen). */
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
  private readonly slotOf = new Map<number, number>();
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
  private state: string[] = [];
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
    return s;
  }

  /** The metadata of a live case, as a fresh object (fields in CaseMeta's order). */
  meta(id: number): CaseMeta {
    const s = this.slot(id);
    return {
      state: this.state[s],
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
    this.state.length = 0;
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
    this.state[s] = m.state;
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
    this.state[s] = '';
    this.valueOverride?.delete(id);
  }

  /** Compact when over half of the used slots are dead. */
  private maybeCompact(): void {
    const dead = this.used - this.slotOf.size;
    if (dead > this.slotOf.size && dead >= INITIAL) this.compact();
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
        this.state[o] = this.state[s];
      }
      o++;
    }
    this.slotId.fill(-1, o, this.used);
    this.state.length = o;
    this.used = o;
  }

  private resize(cap: number): void {
    const f64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a.subarray(0, this.used));
      return b;
    };
    const i32 = (a: Int32Array) => {
      const b = new Int32Array(cap);
      b.set(a.subarray(0, this.used));
      return b;
    };
    const ids = new Int32Array(cap).fill(-1);
    ids.set(this.slotId.subarray(0, this.used));
    this.slotId = ids;
    this.visits = f64(this.visits);
    this.weight = f64(this.weight);
    this.episode = f64(this.episode);
    this.step = f64(this.step);
    this.time = f64(this.time);
    this.seq = f64(this.seq);
    this.touched = f64(this.touched);
    this.actionCode = i32(this.actionCode);
    this.sourceCode = i32(this.sourceCode);
  }
}
