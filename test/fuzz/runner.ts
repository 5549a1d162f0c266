/**
 * One fuzz batch, run inside a child process: draws `calls` calls from the entry table with the
 * batch's RNG, runs each, judges the outcome, and writes the findings to `dir/result.json`.
 * Before each call it writes "index<TAB>entry<TAB>call" to `dir/progress.log` (synchronously),
 * so that the parent can name the exact call when this process crashes or hangs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { errText, judge, type Call, type Ctx, type Entry, type Finding, type Outcome } from './core';
import { batchSeed, FuzzRng } from './rng';
import { entries } from './table';

export interface BatchOptions {
  seed: number;
  batch: number;
  /** Continuation part (after a crash of the batch's previous part). */
  part?: number;
  calls: number;
  dir: string;
  /** Only entries whose name or area contains one of these. */
  only?: string[];
  verbose?: boolean;
  /** Stop drawing calls after this time (ms since the epoch): the run's --time-limit. */
  deadline?: number;
}

export interface BatchResult {
  calls: number;
  /** The batch ended early at a hung call (a worker thread may still be stuck). */
  hung?: boolean;
  findings: Finding[];
  perEntry: Record<string, number>;
  /** CPU milliseconds (user + system, all threads) per entry: making, running and judging its calls. */
  msPerEntry: Record<string, number>;
  seconds: number;
}

const ASYNC_LIMIT_MS = 30_000;

async function execute(call: Call): Promise<Outcome & { hung?: boolean }> {
  let v: unknown;
  try {
    v = call.run();
  } catch (error) {
    return { threw: true, error };
  }
  if (v && typeof (v as PromiseLike<unknown>).then === 'function') {
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((resolve) => {
      timer = setTimeout(() => resolve('hang'), ASYNC_LIMIT_MS);
    });
    try {
      const r = await Promise.race([v as Promise<unknown>, hang]);
      if (r === 'hang') return { threw: false, hung: true };
      return { threw: false, value: r };
    } catch (error) {
      return { threw: true, error };
    } finally {
      clearTimeout(timer);
    }
  }
  return { threw: false, value: v };
}

export function selectEntries(only?: string[]): Entry[] {
  const list = only?.length ? entries.filter((e) => only.some((o) => e.name.includes(o) || e.area.includes(o))) : entries;
  if (!list.length) throw new Error(`--only ${only?.join(',')}: no entry matches (entries: ${entries.map((e) => e.name).join(', ')})`);
  return list;
}

export async function runBatch(o: BatchOptions): Promise<BatchResult> {
  const t0 = Date.now();
  const rng = new FuzzRng(batchSeed(o.seed, o.batch, o.part ?? 0));
  const tmp = path.join(o.dir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  let counter = 0;
  const ctx: Ctx = { rng, tmp, fresh: (p) => path.join(tmp, `${p}-${++counter}`), pools: {} };
  const list = selectEntries(o.only);
  const weighted = list.map((e) => [e.weight, e] as const);
  const progress = fs.openSync(path.join(o.dir, 'progress.log'), 'w');
  // Findings go to disk as they are found: a later crash of this process must not lose them.
  const found = fs.openSync(path.join(o.dir, 'findings.jsonl'), 'w');
  const findings: Finding[] = [];
  const perEntry: Record<string, number> = {};
  const msPerEntry: Record<string, number> = {};
  let done = 0;
  for (let i = 0; i < o.calls; i++, done++) {
    if (o.deadline !== undefined && Date.now() > o.deadline) break;
    const c0 = process.cpuUsage();
    let entry: Entry | undefined;
    let call: Call | undefined;
    for (let tries = 0; tries < 50 && !call; tries++) {
      entry = rng.weighted(weighted);
      call = await entry.make(ctx);
    }
    if (!call || !entry) throw new Error('no entry could make a call (the pools stay empty)');
    fs.writeSync(progress, `${i}\t${entry.name}\t${call.desc.replace(/\n/g, ' ')}\n`);
    if (o.verbose) process.stderr.write(`[${o.batch}${o.part ? `.${o.part}` : ''}:${i}] ${call.desc}\n`);
    const out = await execute(call);
    perEntry[entry.name] = (perEntry[entry.name] ?? 0) + 1;
    const base = { area: call.area ?? entry.area, entry: entry.name, call: call.desc, seed: o.seed, batch: o.batch, part: o.part ?? 0, index: i };
    const record = (f: Finding) => {
      findings.push(f);
      fs.writeSync(found, `${JSON.stringify(f)}\n`);
    };
    if (out.hung) {
      record({ ...base, kind: 'hang', detail: `the Promise did not settle within ${ASYNC_LIMIT_MS / 1000} s` });
      // A worker thread may be stuck for good: end the batch here, the process is not trustworthy.
      fs.closeSync(progress);
      fs.closeSync(found);
      return { calls: i + 1, hung: true, findings, perEntry, msPerEntry, seconds: (Date.now() - t0) / 1000 };
    }
    const verdicts = await judge(call, out);
    if (o.verbose) process.stderr.write(`  -> ${out.threw ? errText(out.error) : 'ok'}${verdicts.length ? ` FINDING ${verdicts.map((f) => f.detail).join(' | ')}` : ''}\n`);
    for (const f of verdicts) record({ ...base, ...f });
    if (verdicts.length) call.discard?.();
    const cpu = process.cpuUsage(c0);
    msPerEntry[entry.name] = (msPerEntry[entry.name] ?? 0) + (cpu.user + cpu.system) / 1000;
  }
  fs.closeSync(progress);
  fs.closeSync(found);
  fs.rmSync(tmp, { recursive: true, force: true });
  return { calls: done, findings, perEntry, msPerEntry, seconds: (Date.now() - t0) / 1000 };
}
