import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EpisodicMemory } from '../../lib/memory/episodic';
import { readSnapshot } from '../../lib/memory/snapshot';
import type { MetaColumns } from '../../lib/memory/metaColumns';
import { Mulberry32 } from '../../lib/policy/rng';
import { memoryLibFiles, transpileLib } from './transpile';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-kill-'));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `m${dirCount++}`);
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

// ---------- kill -9 at random points ----------

describe('killed mid-way (child process, SIGKILL at random points)', () => {
  let jsRoot = '';
  beforeAll(() => {
    jsRoot = transpileLib(memoryLibFiles());
  });
  afterAll(() => fs.rmSync(jsRoot, { recursive: true, force: true }));
  const child = path.resolve(__dirname, '../fixtures/memory_crash_child.js');

  /** Run the child until killed after delayMs; returns its stdout lines. */
  function runAndKill(args: string[], delayMs: number): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [child, jsRoot, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let timer: NodeJS.Timeout | undefined;
      // The kill clock starts when the child is ready (after its imports and load), so that
      // the random delay lands inside the save / write loop whatever the machine's load.
      p.stdout.on('data', (d) => {
        out += d;
        if (!timer && out.includes('ready\n')) timer = setTimeout(() => p.kill('SIGKILL'), delayMs);
      });
      p.stderr.on('data', (d) => (err += d));
      p.on('exit', (code, signal) => {
        if (timer) clearTimeout(timer);
        if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (${code}): ${err}`));
        else resolve(out.split('\n').filter(Boolean));
      });
    });
  }

  it('snapshot saves: 25 kills, the last complete generation always loads intact', async () => {
    const dir = freshDir();
    const { writeSnapshot: ws } = require(path.join(jsRoot, 'lib/memory/snapshot.js'));
    const childSnap = (g: number) => {
      // The child's content for generation g (see the fixture).
      const dim = 16;
      const count = 3000 + ((g * 37) % 500);
      return { dim, count };
    };
    ws(dir, { dim: 16, kernel: {}, options: {}, counters: { g: 0 }, ids: new Int32Array(0), keys: new Float32Array(0), values: new Float32Array(0), meta: [] });
    const rng = new Mulberry32(2024);
    let next = 1;
    let lastSaved = 0;
    const seen = new Set<string>();
    for (let trial = 0; trial < 25; trial++) {
      const lines = await runAndKill([dir, 'snapshot', String(next)], rng.int(120));
      const saved = lines.filter((l) => l.startsWith('saved ')).map((l) => Number(l.slice(6)));
      if (saved.length) lastSaved = saved[saved.length - 1];
      const snap = readSnapshot(dir);
      const g = snap.data.counters.g;
      // Never older than the last save the child reported complete, never beyond one in flight.
      expect(g).toBeGreaterThanOrEqual(lastSaved);
      expect(g).toBeLessThanOrEqual(Math.max(lastSaved, next - 1) + 1);
      if (g > 0) {
        const { dim, count } = childSnap(g);
        expect(snap.data.ids.length).toBe(count);
        expect(snap.data.keys.length).toBe(count * dim);
        expect(snap.data.values.every((v) => v === g)).toBe(true);
        expect(snap.data.keys[count * dim - 1]).toBe(Math.fround(g + (count * dim - 1) * 1e-3));
        expect((snap.data.meta as MetaColumns).at(count - 1).state).toBe(`g${g} row ${count - 1}`);
      }
      // What did the kill leave behind? (for coverage: leftovers of an interrupted save)
      const names = fs.readdirSync(dir);
      seen.add(names.some((n) => n.includes('.tmp')) ? 'interrupted-with-leftovers' : 'clean');
      next = Math.max(g, lastSaved) + 1;
      lastSaved = g;
    }
    expect(seen.has('interrupted-with-leftovers')).toBe(true);
  });

  it('journalled episodes: 10 kills, every reported episode survives, whole episodes only', async () => {
    const dir = freshDir();
    EpisodicMemory.open(dir, { dim: 4, backend: 'js' }).detachJournal();
    const rng = new Mulberry32(99);
    let next = 0;
    for (let trial = 0; trial < 10; trial++) {
      const lines = await runAndKill([dir, 'journal', String(next)], rng.int(150));
      const reported = lines.filter((l) => l.startsWith('episode ')).map((l) => Number(l.slice(8)));
      const mem = EpisodicMemory.load(dir, { backend: 'js' });
      const byEpisode = new Map<number, number>();
      for (const id of mem.ids()) {
        const c = mem.getCase(id)!;
        expect(c.value).toBe(c.episode);
        byEpisode.set(c.episode, (byEpisode.get(c.episode) ?? 0) + 1);
      }
      const eps = [...byEpisode.keys()].sort((a, b) => a - b);
      expect(eps).toEqual(Array.from({ length: eps.length }, (_, i) => i)); // no gaps
      for (const n of byEpisode.values()) expect(n).toBe(5); // whole episodes only
      const last = eps.length ? eps[eps.length - 1] : -1;
      const lastReported = reported.length ? reported[reported.length - 1] : next - 1;
      expect(last).toBeGreaterThanOrEqual(lastReported);
      expect(last).toBeLessThanOrEqual(lastReported + 1);
      next = last + 1;
    }
    expect(next).toBeGreaterThan(10);
  });
});
