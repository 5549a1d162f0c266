/**
 * SharedMemory: one EpisodicMemory shared by many actors (processes, machines) through Redis.
 *
 * A Redis stream (`memq:<name>:log`) is the ordered, durable log of write batches. Every actor
 * keeps a local replica, an ordinary EpisodicMemory on the native index (reads stay local and
 * native-speed), that tails the stream (XREAD BLOCK) and applies every batch in stream order.
 * EpisodicMemory's write is deterministic given the memory's contents and the batch (merge
 * targets from an exact search, eviction from counters and metadata), except for two things
 * this class pins down so that every replica reaches the same state:
 *   - wall-clock `time` of new cases: stamped by the writer into the batch;
 *   - the RNG of sampled importance eviction: reseeded per batch from the stream entry id.
 * Case ids come from the index's id counter; a snapshot records it (nextId) and a replica
 * bootstrapped from one restores it.
 *
 *   write(cases)   XADD the batch, resolve when the local replica has applied that very entry
 *                  (read-your-writes), with its WriteReport. While Redis is unreachable, batches
 *                  wait in a local queue of at most `maxQueued` (then write() throws an Error);
 *                  they are sent in order when it is back. A batch is acknowledged only once
 *                  it is in the stream (with appendfsync always, on Redis's disk): nothing
 *                  acknowledged is lost. A batch re-sent after a lost reply is applied once
 *                  (replicas skip (actor, counter) pairs they have seen).
 *   snapshot()     the replica's state and the stream id it covers, into Redis (or a directory
 *                  on shared storage); a new actor starts from the latest one plus the stream
 *                  after it instead of replaying the whole log.
 *   memory         the replica (estimate, search, retrievalPrior, ... read it directly).
 *
 * The stream format (fields of each entry): op 'w'; a = actor id; n = the actor's batch counter;
 * t = writer's clock (ms, for lag); k = the keys, float32 little-endian, cases × dim; c = JSON
 * of the cases without keys; m = the writer's MAC when the memory authenticates its writers
 * (lib/memory/provenance.ts; every replica checks it). docs/scale.md has the arithmetic of running it at scale.
 */
import * as crypto from 'crypto';
import * as path from 'path';
import { EpisodicMemory } from '../memory/episodic';
import { MetaColumns } from '../memory/metaColumns';
import { keyId, readSnapshot, writeSnapshot, type SnapshotData } from '../memory/snapshot';
import { writerKeyOf } from '../memory/provenance';
import type { CaseInput, CaseRows, EpisodicMemoryOptions, WriteOptions, WriteReport } from '../memory/types';
import { casesFromRows } from '../memory/episodes';

export interface SharedMemoryOptions {
  /** redis://[user:password@]HOST:PORT (no path) */
  url: string;
  /** The memory's name: keys memq:<name>:log, :snapshot, :options. Letters, digits . _ - (≤ 100). */
  name: string;
  /** The memory's options; every actor of one memory must pass the same (checked against Redis). */
  memory: EpisodicMemoryOptions;
  /** Write batches held locally while Redis is unreachable (default 1024); beyond it write() throws. */
  maxQueued?: number;
  /** Bootstrap from the latest snapshot (default true); false replays the whole stream. */
  fromSnapshot?: boolean;
  /** XREAD BLOCK timeout in ms (default 2000) and batch count (default 512). */
  blockMs?: number;
  readCount?: number;
  /** This actor's id in the log (default: random). */
  actorId?: string;
  /** Called with connection trouble (default: silent; the state is in status()). */
  onError?: (e: Error) => void;
}

export interface SharedMemoryStats {
  /** Stream id of the last entry applied to the local replica. */
  lastId: string;
  /** Entries applied (own, others'), and duplicates skipped. */
  applied: number;
  appliedOwn: number;
  duplicates: number;
  /** Batches waiting to be sent to Redis. */
  queued: number;
  connected: boolean;
  /** Replica lag of other actors' batches: ms from their XADD to our apply (mean, max, samples). */
  lagMeanMs: number;
  lagMaxMs: number;
  lagSamples: number;
  /** ms from write() to its resolution (own batches). */
  writeMeanMs: number;
}

export class SharedMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SharedMemoryError';
  }
}

const NAME_RE = /^[A-Za-z0-9._-]{1,100}$/;
const SNAP_MAGIC = Buffer.from('MEMQSHM1');

/** Parses redis://HOST:PORT/NAME into the connection URL and the memory name. */
export function parseMemoryUrl(u: string): { url: string; name: string } {
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    throw new RangeError(`memory URL must look like redis://HOST:PORT/NAME, got ${JSON.stringify(u)}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new RangeError(`memory URL must start with redis:// (or rediss://), got ${JSON.stringify(u)}`);
  const name = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  if (!NAME_RE.test(name)) throw new RangeError(`memory URL ${JSON.stringify(u)}: the path must name the memory (letters, digits . _ -, at most 100), as in redis://HOST:PORT/NAME`);
  if (!parsed.hostname) throw new RangeError(`memory URL ${JSON.stringify(u)} has no host`);
  const auth = parsed.username || parsed.password ? `${parsed.username}${parsed.password ? `:${parsed.password}` : ''}@` : '';
  return { url: `${parsed.protocol}//${auth}${parsed.host}`, name };
}

/** A per-batch RNG state from the stream entry id (FNV-1a, 32 bits). */
export function seedOfEntry(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Stream ids compare as (ms, seq). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}

function optionsFingerprint(o: EpisodicMemoryOptions): string {
  const fp: Record<string, unknown> = { dim: o.dim, kernel: o.kernel ?? { kernel: 'gaussian', bandwidth: 1 }, policy: o.policy ?? { kind: 'unbounded' }, merge: o.merge ?? null };
  // Authenticated provenance: every replica must check MACs with the same writer key (its id
  // only: an HMAC of the key, which reveals nothing of it), or their sources would diverge.
  const writer = writerKeyOf(o.trust?.authenticate, 'memory.trust.authenticate');
  if (writer) fp.writer = keyId(writer);
  // Under any trust policy writes merge only within a source: replicas with and without one
  // would apply the same batch differently.
  if (o.trust !== undefined) fp.bySource = true;
  return JSON.stringify(fp);
}

interface Entry {
  id: string;
  fields: Record<string, Buffer>;
}

interface Outgoing {
  counter: number;
  fields: Record<string, Buffer | string>;
}

/** The minimal Redis surface used here (node-redis underneath; Buffers in and out). */
interface Conn {
  client: any;
  bin: any;
}

type RedisModule = typeof import('redis');

function loadRedis(): RedisModule {
  try {
    return require('redis') as RedisModule;
  } catch (e) {
    throw new SharedMemoryError(`SharedMemory needs the 'redis' package (npm install redis): ${(e as Error).message}`);
  }
}

function entriesOf(reply: unknown): Entry[] {
  if (!reply) return [];
  const streams = reply as { name: unknown; messages: { id: unknown; message: Record<string, Buffer> }[] }[];
  const out: Entry[] = [];
  for (const s of streams) for (const m of s.messages) out.push({ id: String(m.id), fields: m.message });
  return out;
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SharedMemory {
  readonly name: string;
  readonly actorId: string;
  readonly logKey: string;
  readonly snapshotKey: string;
  readonly optionsKey: string;
  /** The local replica. Read it directly; write through this class. */
  memory!: EpisodicMemory;

  private readonly opts: SharedMemoryOptions;
  private readonly maxQueued: number;
  private writer!: Conn;
  private reader!: Conn;
  private lastIdValue = '0-0';
  /** Highest batch counter applied per actor (dedupe of re-sent batches; in snapshots). */
  private seen = new Map<string, number>();
  /** Next case id the index issues (restored on bootstrap). */
  private nextId = 0;
  private counter = 0;
  private outbox: Outgoing[] = [];
  private waiting = new Map<number, { resolve: (r: WriteReport) => void; reject: (e: Error) => void; t0: number }>();
  private sending = false;
  private closed = false;
  private readerDone: Promise<void> = Promise.resolve();
  private applyChain: Promise<unknown> = Promise.resolve();
  private connected = true;
  private st = { applied: 0, appliedOwn: 0, duplicates: 0, lagSum: 0, lagMax: 0, lagN: 0, writeSum: 0, writeN: 0 };
  private idWaiters: { id: string; resolve: () => void }[] = [];

  private constructor(opts: SharedMemoryOptions) {
    if (!NAME_RE.test(opts.name)) throw new RangeError(`SharedMemory name must be letters, digits . _ - (at most 100), got ${JSON.stringify(opts.name)}`);
    const mq = opts.maxQueued ?? 1024;
    if (!Number.isInteger(mq) || mq < 1) throw new RangeError(`maxQueued must be an integer >= 1, got ${mq}`);
    this.opts = opts;
    this.maxQueued = mq;
    this.name = opts.name;
    this.actorId = opts.actorId ?? crypto.randomBytes(8).toString('hex');
    this.logKey = `memq:${opts.name}:log`;
    this.snapshotKey = `memq:${opts.name}:snapshot`;
    this.optionsKey = `memq:${opts.name}:options`;
  }

  /** Connects, bootstraps the replica (snapshot + the stream after it) and starts tailing. */
  static async open(opts: SharedMemoryOptions): Promise<SharedMemory> {
    const sm = new SharedMemory(opts);
    await sm.start();
    return sm;
  }

  private async connect(): Promise<Conn> {
    const { createClient, RESP_TYPES } = loadRedis();
    const client = createClient({
      url: this.opts.url,
      disableOfflineQueue: true,
      socket: { connectTimeout: 3000, reconnectStrategy: (retries: number) => Math.min(50 * (retries + 1), 1000) },
    });
    client.on('error', (e: Error) => this.onConnError(e));
    client.on('ready', () => {
      this.connected = true;
    });
    client.on('end', () => undefined);
    try {
      await client.connect();
    } catch (e) {
      throw new SharedMemoryError(`SharedMemory ${this.name}: cannot connect to ${this.opts.url}: ${(e as Error).message}`);
    }
    const bin = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    return { client, bin };
  }

  private lastError = '';
  private onConnError(e: Error): void {
    this.connected = false;
    if (e.message !== this.lastError) {
      this.lastError = e.message;
      this.opts.onError?.(e);
    }
  }

  private async start(): Promise<void> {
    const o = this.opts.memory;
    this.writer = await this.connect();
    this.reader = await this.connect();
    // One memory, one set of options: the first actor records them, the others must agree.
    const fp = optionsFingerprint(o);
    await this.writer.client.set(this.optionsKey, fp, { condition: 'NX' });
    const stored = String(await this.writer.client.get(this.optionsKey));
    if (stored !== fp) {
      await this.close();
      throw new RangeError(`SharedMemory ${this.name}: this actor's memory options ${fp} differ from the memory's ${stored}`);
    }
    let replica: EpisodicMemory | undefined;
    if (this.opts.fromSnapshot ?? true) {
      const snap: Buffer | null = await this.writer.bin.get(this.snapshotKey);
      if (snap) replica = this.restore(snap, o);
    }
    this.memory = replica ?? new EpisodicMemory(o);
    this.guardReplica();
    // Catch up with the stream to its end as of now, then tail it.
    for (;;) {
      const batch = entriesOf(await this.reader.bin.xRead({ key: this.logKey, id: this.lastIdValue }, { COUNT: this.opts.readCount ?? 512 }));
      if (batch.length === 0) break;
      for (const e of batch) await this.apply(e);
    }
    this.readerDone = this.tail();
  }

  /** Writes on the replica itself would fork it from the log: they go through this class. */
  private guardReplica(): void {
    const m = this.memory as unknown as Record<string, unknown>;
    m.write = (cases: CaseInput[], opts?: WriteOptions) => this.write(cases, opts);
    m.writeRows = (keys: Float32Array, values: ArrayLike<number>, rows?: CaseRows, opts?: WriteOptions) => {
      let cases: CaseInput[];
      try {
        cases = casesFromRows(keys, values, rows, this.memory.dim);
      } catch (err) {
        return Promise.reject(err);
      }
      return this.write(cases, opts);
    };
    const refuse = (what: string) => () => {
      throw new SharedMemoryError(`${what} on a shared memory (${this.name}) would fork this replica from the others; only write() and writeRows() are shared`);
    };
    m.remove = refuse('remove');
    m.setWeights = refuse('setWeights');
    m.setKernel = refuse('setKernel');
    m.setBandwidth = refuse('setBandwidth');
    m.attachJournal = refuse('attachJournal');
  }

  private restore(buf: Buffer, o: EpisodicMemoryOptions): EpisodicMemory {
    let header: { streamId: string; nextId: number; seen: [string, number][]; dir?: string; data?: Omit<SnapshotData, 'ids' | 'keys' | 'values'> & { n: number } };
    let data: SnapshotData;
    if (buf.subarray(0, 8).equals(SNAP_MAGIC)) {
      const hlen = buf.readUInt32LE(8);
      header = JSON.parse(buf.subarray(12, 12 + hlen).toString('utf8'));
      const d = header.data!;
      let off = 12 + hlen;
      off += (4 - (off % 4)) % 4;
      const copy = (bytes: number) => {
        const b = Buffer.from(buf.subarray(off, off + bytes)); // aligned copy
        off += bytes;
        return b.buffer.slice(b.byteOffset, b.byteOffset + bytes);
      };
      const ids = new Int32Array(copy(d.n * 4));
      const keys = new Float32Array(copy(d.n * d.dim * 4));
      const values = new Float32Array(copy(d.n * 4));
      data = { dim: d.dim, kernel: d.kernel, options: d.options, counters: d.counters, meta: d.meta, ids, keys, values };
    } else {
      header = JSON.parse(buf.toString('utf8'));
      if (!header.dir) throw new SharedMemoryError(`SharedMemory ${this.name}: ${this.snapshotKey} holds neither a snapshot nor a pointer to one`);
      data = readSnapshot(header.dir).data;
    }
    const mem = EpisodicMemory.fromSnapshotData(data, o.backend ?? 'auto');
    // The index issues ids after the highest it ever issued. Through write() alone that id is
    // always live (eviction happens only while adding newer cases), so this is defensive: it
    // keeps ids equal across replicas should the highest id ever leave before a snapshot.
    const last = data.ids.length ? data.ids[data.ids.length - 1] : -1;
    if (header.nextId > last + 1) {
      const id = Int32Array.of(header.nextId - 1);
      mem.index.addWithIds(id, new Float32Array(mem.dim), new Float32Array(1));
      mem.index.remove(id);
    }
    this.nextId = header.nextId;
    this.seen = new Map(header.seen);
    this.lastIdValue = header.streamId;
    return mem;
  }

  private async tail(): Promise<void> {
    const block = this.opts.blockMs ?? 2000;
    while (!this.closed) {
      let batch: Entry[];
      try {
        batch = entriesOf(await this.reader.bin.xRead({ key: this.logKey, id: this.lastIdValue }, { BLOCK: block, COUNT: this.opts.readCount ?? 512 }));
      } catch (e) {
        if (this.closed) return;
        this.onConnError(e as Error);
        await sleep(100);
        continue;
      }
      for (const e of batch) await this.apply(e);
    }
  }

  /** Applies one stream entry to the replica (in stream order; entries arrive one at a time). */
  private apply(e: Entry): Promise<void> {
    const run = this.applyChain.then(() => this.applyNow(e));
    this.applyChain = run.catch(() => undefined);
    return run;
  }

  private async applyNow(e: Entry): Promise<void> {
    if (compareIds(e.id, this.lastIdValue) <= 0) return;
    const f = e.fields;
    const actor = String(f.a);
    const counter = Number(String(f.n));
    const dup = (this.seen.get(actor) ?? -1) >= counter;
    let report: WriteReport | undefined;
    let error: Error | undefined;
    if (dup) this.st.duplicates++;
    else {
      this.seen.set(actor, counter);
      const cases = decodeCases(f, this.memory.dim);
      (this.memory as unknown as { rng: { state: number } }).rng.state = seedOfEntry(e.id);
      try {
        // the writer's MAC (authenticated provenance) travels with the batch; every replica checks it
        report = await EpisodicMemory.prototype.write.call(this.memory, cases, f.m === undefined ? undefined : { mac: String(f.m) });
        for (const id of report.added) if (id + 1 > this.nextId) this.nextId = id + 1;
      } catch (err) {
        // Every replica fails the same way on the same batch: skipping it keeps them equal.
        error = err as Error;
      }
      this.st.applied++;
    }
    this.lastIdValue = e.id;
    if (actor === this.actorId) {
      const w = this.waiting.get(counter);
      if (w) {
        this.waiting.delete(counter);
        this.st.appliedOwn++;
        this.st.writeSum += now() - w.t0;
        this.st.writeN++;
        if (error) w.reject(error);
        else if (report) w.resolve(report);
        else w.reject(new SharedMemoryError(`batch ${counter} was applied before (a duplicate in the log)`));
      }
    } else if (!dup) {
      const lag = now() - Number(String(f.t));
      if (Number.isFinite(lag)) {
        this.st.lagSum += lag;
        this.st.lagMax = Math.max(this.st.lagMax, lag);
        this.st.lagN++;
      }
    }
    for (let i = this.idWaiters.length - 1; i >= 0; i--) {
      if (compareIds(this.idWaiters[i].id, e.id) <= 0) {
        this.idWaiters[i].resolve();
        this.idWaiters.splice(i, 1);
      }
    }
  }

  /**
   * Appends a batch to the shared log; resolves with the WriteReport once this replica has
   * applied it. Throws (RangeError/TypeError) on bad cases before anything is sent, and an
   * Error when `maxQueued` batches already wait for an unreachable Redis.
   */
  write(cases: CaseInput[], opts?: WriteOptions): Promise<WriteReport> {
    if (this.closed) return Promise.reject(new SharedMemoryError(`SharedMemory ${this.name} is closed`));
    let fields: Record<string, Buffer | string>;
    try {
      fields = encodeCases(cases, this.memory.dim);
      if (opts?.mac !== undefined) {
        if (typeof opts.mac !== 'string') throw new TypeError('write options: mac must be a string (signWrite / signCases)');
        fields.m = opts.mac;
      }
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.outbox.length >= this.maxQueued) {
      return Promise.reject(
        new SharedMemoryError(`SharedMemory ${this.name}: ${this.outbox.length} write batches already wait for Redis at ${this.opts.url} (${this.connected ? 'slow' : 'unreachable'}: ${this.lastError || 'no reply'}); the bound maxQueued = ${this.maxQueued} is reached, this write is refused`),
      );
    }
    const counter = this.counter++;
    fields.a = this.actorId;
    fields.n = String(counter);
    const p = new Promise<WriteReport>((resolve, reject) => this.waiting.set(counter, { resolve, reject, t0: now() }));
    this.outbox.push({ counter, fields });
    void this.pump();
    return p;
  }

  /** Sends queued batches in order, one at a time, retrying (after reconnects) until each is in the stream. */
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.outbox.length && !this.closed) {
        const o = this.outbox[0];
        try {
          o.fields.t = String(now());
          await this.writer.bin.xAdd(this.logKey, '*', o.fields);
          this.outbox.shift();
        } catch (e) {
          this.onConnError(e as Error);
          await sleep(100);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** Resolves once the replica has applied the stream up to its end as of this call (other actors' writes included). */
  async sync(): Promise<void> {
    let last: string | undefined;
    for (;;) {
      try {
        const r = await this.writer.bin.xRevRange(this.logKey, '+', '-', { COUNT: 1 });
        last = r.length ? String(r[0].id) : '0-0';
        break;
      } catch (e) {
        if (this.closed) throw e;
        await sleep(100);
      }
    }
    if (compareIds(last, this.lastIdValue) <= 0) return;
    await new Promise<void>((resolve) => this.idWaiters.push({ id: last!, resolve }));
  }

  /**
   * Saves the replica's state with the stream id it covers: into Redis (default), or into
   * `dir` on storage every actor can read (for memories past Redis's 512 MB value limit), with
   * a pointer in Redis. Returns the stream id covered.
   */
  async snapshot(opts: { dir?: string } = {}): Promise<{ streamId: string; cases: number; bytes: number }> {
    let result!: { streamId: string; cases: number; bytes: number };
    const task = this.applyChain.then(async () => {
      const data = this.memory.toSnapshotData();
      const head = { version: 1, name: this.name, streamId: this.lastIdValue, nextId: this.nextId, seen: [...this.seen], time: new Date().toISOString() };
      let value: Buffer;
      if (opts.dir) {
        const dir = path.join(opts.dir, `${this.name}-${this.lastIdValue}`);
        writeSnapshot(dir, data);
        value = Buffer.from(JSON.stringify({ ...head, dir }));
      } else {
        const { ids, keys, values, meta, ...rest } = data;
        // the metadata as CaseMeta objects in the JSON head (the blob's format 1 is unchanged)
        const objs = meta instanceof MetaColumns ? meta.toObjects() : meta;
        const h = Buffer.from(JSON.stringify({ ...head, data: { ...rest, meta: objs, n: ids.length } }), 'utf8');
        let off = 12 + h.length;
        const pad = (4 - (off % 4)) % 4;
        off += pad;
        value = Buffer.alloc(off + ids.byteLength + keys.byteLength + values.byteLength);
        SNAP_MAGIC.copy(value, 0);
        value.writeUInt32LE(h.length, 8);
        h.copy(value, 12);
        Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength).copy(value, off);
        off += ids.byteLength;
        Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength).copy(value, off);
        off += keys.byteLength;
        Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(value, off);
      }
      // A snapshot never replaces a newer one (actors may snapshot concurrently).
      const script = "local cur = redis.call('GET', KEYS[1]) if cur then local id = string.match(cur, '\"streamId\":\"([0-9]+%-[0-9]+)\"') if id then local a1, a2 = string.match(id, '(%d+)-(%d+)') local b1, b2 = string.match(ARGV[2], '(%d+)-(%d+)') if tonumber(a1) > tonumber(b1) or (tonumber(a1) == tonumber(b1) and tonumber(a2) >= tonumber(b2)) then return 0 end end end redis.call('SET', KEYS[1], ARGV[1]) return 1";
      await this.writer.bin.eval(script, { keys: [this.snapshotKey], arguments: [value, this.lastIdValue] });
      result = { streamId: this.lastIdValue, cases: data.ids.length, bytes: value.length };
    });
    this.applyChain = task.catch(() => undefined);
    await task;
    return result;
  }

  get lastId(): string {
    return this.lastIdValue;
  }

  stats(): SharedMemoryStats {
    const s = this.st;
    return {
      lastId: this.lastIdValue,
      applied: s.applied,
      appliedOwn: s.appliedOwn,
      duplicates: s.duplicates,
      queued: this.outbox.length,
      connected: this.connected,
      lagMeanMs: s.lagN ? s.lagSum / s.lagN : 0,
      lagMaxMs: s.lagMax,
      lagSamples: s.lagN,
      writeMeanMs: s.writeN ? s.writeSum / s.writeN : 0,
    };
  }

  /** Waits for queued batches to be applied (up to `ms`), then disconnects. */
  async close(opts: { drainMs?: number } = {}): Promise<void> {
    if (this.closed) return;
    const t0 = Date.now();
    while ((this.outbox.length || this.waiting.size) && Date.now() - t0 < (opts.drainMs ?? 10_000) && this.writer) await sleep(20);
    this.closed = true;
    for (const w of this.waiting.values()) w.reject(new SharedMemoryError(`SharedMemory ${this.name} closed before this write reached the log`));
    this.waiting.clear();
    for (const c of [this.writer, this.reader]) {
      if (!c) continue;
      try {
        c.client.destroy();
      } catch {
        /* already gone */
      }
    }
    await this.readerDone.catch(() => undefined);
  }
}

/** Validates and encodes a batch (keys as float32, the rest as JSON; the writer's clock fixes `time`). */
export function encodeCases(cases: CaseInput[], dim: number): Record<string, Buffer | string> {
  if (!Array.isArray(cases)) throw new TypeError(`cases must be an array of {key, value, ...}, got ${cases === null ? 'null' : typeof cases}`);
  const keys = new Float32Array(cases.length * dim);
  const t = Date.now();
  const rest = cases.map((c, i) => {
    if (c === null || typeof c !== 'object') throw new TypeError(`cases[${i}] must be an object {key, value, ...}`);
    if (!(c.key instanceof Float32Array) && !Array.isArray(c.key)) throw new TypeError(`cases[${i}].key must be a Float32Array or a number[]`);
    if (c.key.length !== dim) throw new RangeError(`cases[${i}].key has length ${c.key.length}, expected dim ${dim}`);
    if (typeof c.value !== 'number' || !Number.isFinite(c.value)) throw new RangeError(`cases[${i}].value must be finite, got ${c.value}`);
    keys.set(c.key, i * dim);
    for (let j = i * dim; j < (i + 1) * dim; j++) if (!Number.isFinite(keys[j])) throw new RangeError(`cases[${i}].key has a non-finite entry`);
    const { key: _k, ...r } = c;
    return { ...r, time: c.time ?? t };
  });
  return { op: 'w', k: Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength), c: JSON.stringify(rest) };
}

export function decodeCases(f: Record<string, Buffer>, dim: number): CaseInput[] {
  const rest = JSON.parse(String(f.c)) as Omit<CaseInput, 'key'>[];
  const kb = f.k;
  if (!kb || kb.length % 4 !== 0) throw new SharedMemoryError('a log entry has no whole float32 keys');
  const keys = new Float32Array(new Uint8Array(kb).buffer); // a fresh, aligned copy
  if (keys.length !== rest.length * dim) throw new SharedMemoryError(`a log entry holds ${keys.length / dim} keys for ${rest.length} cases`);
  return rest.map((r, i) => ({ ...r, key: keys.subarray(i * dim, (i + 1) * dim) }));
}
