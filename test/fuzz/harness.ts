/**
 * The fuzz harness (parent process): splits `--calls` into batches, runs each batch in a child
 * process (at most `--jobs` at a time, each under an address-space limit), watches them, and
 * sums up. A child that dies by a signal or exits abnormally is a crash, reported with the seed,
 * the batch and the exact call it was running (read from the batch's progress.log), so that
 * `--seed S --batch B --calls K+1 --verbose` replays it.
 *
 *   node scripts/fuzz.js [--calls N] [--seed S] [--time-limit SEC] [--jobs J] [--batch-size K]
 *                        [--only NAME,...] [--batch B] [--verbose] [--report FILE] [--mem-limit-mb M]
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Finding, FindingKind } from './core';
import type { BatchResult } from './runner';

export interface HarnessOptions {
  calls: number;
  seed: number;
  timeLimit: number;
  jobs: number;
  batchSize: number;
  only?: string[];
  batch?: number;
  part: number;
  verbose: boolean;
  report?: string;
  memLimitMb: number;
  quiet: boolean;
}

export interface Summary {
  calls: number;
  seconds: number;
  counts: Record<FindingKind, number>;
  findings: Finding[];
  distinct: { signature: string; count: number; first: Finding }[];
  perEntry: Record<string, number>;
  msPerEntry: Record<string, number>;
  batchesRun: number;
  batchesSkipped: number;
}

const SCRIPT = path.resolve(__dirname, '../../scripts/fuzz.js');
const HANG_S = 60;

function usage(): string {
  return [
    'usage: node scripts/fuzz.js [--calls N] [--seed S] [--time-limit SEC] [--jobs J] [--batch-size K]',
    '                            [--only NAME,...] [--batch B] [--verbose] [--report FILE] [--mem-limit-mb M] [--quiet]',
    '  --calls N        calls in all (default 2000), in batches of --batch-size (default 500), one child process each',
    '  --seed S         run seed (default: from the clock; printed); batch B of seed S is always the same calls',
    '  --time-limit SEC stop drawing calls after SEC seconds (default: none)',
    '  --jobs J         child processes at a time (default: the number of CPU cores)',
    '  --only LIST      entries whose name or area contains one of these (comma-separated)',
    '  --batch B        run only batch B (replay: --seed S --batch B [--part P] --calls K+1 --verbose)',
    '  --part P         with --batch: the continuation part P of batch B (after a crash, the rest of a',
    '                   batch runs as a new part with fresh calls, so --calls N still runs N calls)',
    '  --report FILE    write every finding as JSON',
    '  --mem-limit-mb M address-space limit of each child (default 4096; 0: none)',
  ].join('\n');
}

export function parseOptions(argv: string[]): HarnessOptions {
  const o: HarnessOptions = {
    calls: 2000,
    seed: (Date.now() ^ (process.pid << 10)) >>> 0,
    timeLimit: Infinity,
    jobs: Math.max(1, os.cpus().length),
    batchSize: 500,
    part: 0,
    verbose: false,
    memLimitMb: 4096,
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${usage()}`);
      return v;
    };
    const num = (lo: number) => {
      const s = val();
      const v = Number(s);
      if (!Number.isFinite(v) || v < lo || s.trim() === '') throw new Error(`${flag} expects a number >= ${lo}, got '${s}'`);
      return v;
    };
    switch (flag) {
      case '--calls': o.calls = Math.floor(num(1)); break;
      case '--seed': o.seed = Math.floor(num(0)) >>> 0; break;
      case '--time-limit': o.timeLimit = num(0); break;
      case '--jobs': o.jobs = Math.floor(num(1)); break;
      case '--batch-size': o.batchSize = Math.floor(num(1)); break;
      case '--only': o.only = val().split(',').filter(Boolean); break;
      case '--batch': o.batch = Math.floor(num(0)); break;
      case '--part': o.part = Math.floor(num(0)); break;
      case '--verbose': o.verbose = true; break;
      case '--quiet': o.quiet = true; break;
      case '--report': o.report = val(); break;
      case '--mem-limit-mb': o.memLimitMb = Math.floor(num(0)); break;
      case '--help': case '-h': throw new Error(usage());
      default: throw new Error(`unknown option ${a}\n${usage()}`);
    }
  }
  return o;
}

interface BatchPlan {
  batch: number;
  part: number;
  calls: number;
}

function plan(o: HarnessOptions): BatchPlan[] {
  if (o.batch !== undefined) return [{ batch: o.batch, part: o.part, calls: o.calls }];
  const out: BatchPlan[] = [];
  for (let b = 0; b * o.batchSize < o.calls; b++) out.push({ batch: b, part: 0, calls: Math.min(o.batchSize, o.calls - b * o.batchSize) });
  return out;
}

function lastProgress(dir: string): { index: number; entry: string; call: string } | undefined {
  try {
    const lines = fs.readFileSync(path.join(dir, 'progress.log'), 'utf8').split('\n').filter(Boolean);
    const last = lines[lines.length - 1];
    if (!last) return undefined;
    const [index, entry, ...rest] = last.split('\t');
    return { index: Number(index), entry, call: rest.join('\t') };
  } catch {
    return undefined;
  }
}

function areaOf(entry: string): Finding['area'] {
  if (/^memq /.test(entry)) return 'CLI';
  if (/Episodic|snapshot|journal/i.test(entry)) return 'lib/memory';
  if (/Llm|Lora/.test(entry)) return 'lib/llm';
  return 'native/addon';
}

/** Runs one batch in a child; resolves to its result, or to a crash/hang finding. */
function readFindings(dir: string): Finding[] {
  try {
    return fs.readFileSync(path.join(dir, 'findings.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Finding);
  } catch {
    return [];
  }
}

function runChild(o: HarnessOptions, p: BatchPlan, root: string, deadline: number): Promise<{ result?: BatchResult; crash?: Finding; earlier?: Finding[]; calls: number; harnessBug?: boolean }> {
  const dir = path.join(root, `batch-${p.batch}-${p.part}`);
  fs.mkdirSync(dir, { recursive: true });
  const args = ['--expose-gc', SCRIPT, '--child', '--seed', String(o.seed), '--batch', String(p.batch), '--part', String(p.part), '--calls', String(p.calls), '--dir', dir];
  if (Number.isFinite(deadline)) args.push('--deadline', String(deadline));
  if (o.only) args.push('--only', o.only.join(','));
  if (o.verbose) args.push('--verbose');
  // No core dumps (an abort of a 4 GB process would take minutes to dump), and a memory cap so a
  // huge allocation fails (or aborts) at once instead of pushing the machine into swap.
  const limit = `ulimit -c 0 2>/dev/null; ${o.memLimitMb > 0 ? `ulimit -v ${o.memLimitMb * 1024} 2>/dev/null; ` : ''}`;
  const child = spawn('/bin/sh', ['-c', `${limit}exec "$0" "$@"`, process.execPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MEMQ_FUZZ_CHILD: '1' },
  });
  let stderr = '';
  child.stdout.on('data', (d) => process.stdout.write(d));
  child.stderr.on('data', (d) => {
    if (o.verbose) process.stderr.write(d);
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let lastSize = -1;
  let stale = 0;
  let hung = false;
  const watch = setInterval(() => {
    let size = 0;
    try {
      size = fs.statSync(path.join(dir, 'progress.log')).size;
    } catch {
      // not started yet
    }
    if (size === lastSize) stale += 5;
    else stale = 0;
    lastSize = size;
    if (stale >= HANG_S) {
      hung = true;
      child.kill('SIGKILL');
    }
  }, 5000);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearInterval(watch);
      const resultFile = path.join(dir, 'result.json');
      let result: BatchResult | undefined;
      try {
        result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as BatchResult;
      } catch {
        // no result: the child crashed
      }
      // Exit code 0, or killed by itself after a hang it reported (result.hung).
      if (result && ((code === 0 && !hung) || result.hung)) {
        fs.rmSync(dir, { recursive: true, force: true });
        resolve({ result, calls: result.calls });
        return;
      }
      const at = lastProgress(dir);
      const earlier = readFindings(dir);
      const harnessBug = code === 3;
      const tail = stderr.split('\n').filter((l) => l.trim()).slice(-12).join('\n');
      const how = hung ? `no progress for ${HANG_S} s (killed)` : signal ? `killed by signal ${signal}` : `exit code ${code}`;
      const crash: Finding = {
        kind: hung ? 'hang' : 'crash',
        area: at ? areaOf(at.entry) : 'native/addon',
        entry: at?.entry ?? '(before the first call)',
        call: at?.call ?? '',
        detail: `${harnessBug ? 'the fuzzer itself failed (a bug in test/fuzz, not in memq), ' : ''}${how}${tail ? `; stderr:\n${tail}` : ''}`,
        seed: o.seed,
        batch: p.batch,
        part: p.part,
        index: at?.index,
      };
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ crash, earlier, calls: at ? at.index + 1 : 0, harnessBug });
    });
  });
}

function signature(f: Finding): string {
  const detail = f.detail
    .split('\n')[0]
    .replace(/-?\d+(\.\d+)?(e[-+]?\d+)?/gi, '#')
    .replace(/\/[^\s'"]*/g, '<path>')
    .slice(0, 140);
  return `${f.kind} | ${f.entry} | ${detail}`;
}

export function replayCommand(f: Finding): string {
  if (f.batch === undefined || f.index === undefined) return '';
  return `node scripts/fuzz.js --seed ${f.seed} --batch ${f.batch}${f.part ? ` --part ${f.part}` : ''} --calls ${f.index + 1} --verbose`;
}

export async function runHarness(o: HarnessOptions): Promise<Summary> {
  const t0 = Date.now();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-fuzz-'));
  const batches = plan(o);
  const findings: Finding[] = [];
  const perEntry: Record<string, number> = {};
  const msPerEntry: Record<string, number> = {};
  let calls = 0;
  let next = 0;
  let run = 0;
  const log = (s: string) => {
    if (!o.quiet) process.stderr.write(s);
  };
  log(`fuzz: seed ${o.seed}, ${o.calls} calls in ${batches.length} batch(es), ${o.jobs} job(s)${o.only ? `, only ${o.only.join(',')}` : ''}${process.env.MEMQ_ADDON ? `, MEMQ_ADDON=${process.env.MEMQ_ADDON}` : ''}\n`);
  // Children stop drawing calls at the deadline, so a run ends about --time-limit after it began.
  const deadline = t0 + o.timeLimit * 1000;
  const worker = async () => {
    while (next < batches.length) {
      if (Date.now() >= deadline) return;
      const p = batches[next++];
      const r = await runChild(o, p, root, deadline);
      run++;
      calls += r.calls;
      if (r.result) {
        findings.push(...r.result.findings);
        for (const [k, v] of Object.entries(r.result.perEntry)) perEntry[k] = (perEntry[k] ?? 0) + v;
        for (const [k, v] of Object.entries(r.result.msPerEntry ?? {})) msPerEntry[k] = (msPerEntry[k] ?? 0) + v;
      }
      if (r.crash) findings.push(...(r.earlier ?? []), r.crash);
      // The rest of a batch that crashed or hung runs as its next part (fresh calls, new child).
      const rest = p.calls - r.calls;
      if ((r.crash || r.result?.hung) && !r.harnessBug && rest > 0 && o.batch === undefined) batches.push({ batch: p.batch, part: p.part + 1, calls: rest });
      const bad = (r.result?.findings.length ?? 0) + (r.earlier?.length ?? 0) + (r.crash ? 1 : 0);
      log(`fuzz: batch ${p.batch}${p.part ? `.${p.part}` : ''}: ${r.calls} calls${r.crash ? `, ${r.crash.kind.toUpperCase()} at call ${r.crash.index}` : r.result?.hung ? `, HANG at call ${r.calls - 1}` : ''}${bad ? `, ${bad} finding(s)` : ''} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.jobs, batches.length) }, worker));
  fs.rmSync(root, { recursive: true, force: true });
  const counts: Record<FindingKind, number> = { crash: 0, hang: 0, 'wrong-class': 0, 'unchanged-state': 0, 'wrong-result': 0 };
  const bySig = new Map<string, { signature: string; count: number; first: Finding }>();
  for (const f of findings) {
    counts[f.kind]++;
    const sig = signature(f);
    const d = bySig.get(sig);
    if (d) d.count++;
    else bySig.set(sig, { signature: sig, count: 1, first: f });
  }
  const distinct = [...bySig.values()].sort((a, b) => b.count - a.count);
  return { calls, seconds: (Date.now() - t0) / 1000, counts, findings, distinct, perEntry, msPerEntry, batchesRun: run, batchesSkipped: batches.length - run };
}

export function summaryLine(s: Summary): string {
  const c = s.counts;
  return `fuzz: ${s.calls} calls, ${c.crash + c.hang} crashes, ${c['wrong-class']} wrong-class errors, ${c['unchanged-state']} unchanged-state violations, ${c['wrong-result']} wrong results`;
}

export function formatSummary(s: Summary, o: HarnessOptions): string {
  const lines: string[] = [];
  for (const d of s.distinct) {
    const f = d.first;
    lines.push(`[${f.kind}] ${f.area} ${f.entry} (x${d.count})`);
    lines.push(`  ${f.detail.split('\n').join('\n  ')}`);
    lines.push(`  call: ${f.call.length > 1500 ? `${f.call.slice(0, 1500)}…` : f.call}`);
    const rc = replayCommand(f);
    if (rc) lines.push(`  replay: ${rc}`);
  }
  const entries = Object.entries(s.perEntry)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}${s.msPerEntry[k] !== undefined ? ` (${(s.msPerEntry[k] / v).toFixed(1)} ms CPU)` : ''}`)
    .join(', ');
  lines.push(`fuzz: seed ${o.seed}; ${s.distinct.length} distinct finding(s); ${s.seconds.toFixed(1)} s, ${(s.calls / Math.max(s.seconds, 1e-9)).toFixed(0)} calls/s${s.batchesSkipped ? `; time limit: ${s.batchesSkipped} batch(es) not run` : ''}`);
  lines.push(`fuzz: calls per entry: ${entries}`);
  lines.push(summaryLine(s));
  return lines.join('\n') + '\n';
}

export async function main(argv: string[]): Promise<number> {
  let o: HarnessOptions;
  try {
    o = parseOptions(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const s = await runHarness(o);
  if (o.report) fs.writeFileSync(o.report, JSON.stringify({ seed: o.seed, ...s }, null, 2) + '\n');
  process.stdout.write(formatSummary(s, o));
  const c = s.counts;
  return c.crash + c.hang + c['wrong-class'] + c['unchanged-state'] + c['wrong-result'] > 0 ? 1 : 0;
}
