/**
 * `memq run --memory redis://HOST:PORT/NAME [--actors N]`: N memq actors on this machine, each
 * its own process and seed, learning into one episodic memory shared through Redis
 * (SharedMemory). The run directory is an ordinary memq run directory (run.json + one
 * memq-seed<S>/ per actor) that `memq compare` reads; each actor directory also gets shared.json
 * (its replica's lag and write latency).
 *
 *   memq run --memory URL --actors N [run flags] --out DIR   start N actors (seeds seed .. seed+N-1)
 *   memq run --resume DIR --memory URL                       continue them (or one actor's directory)
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CliError, type CliIO } from '../cli/args';
import { configFromDisk, type RunConfig } from '../agent/config';
import { runTraining, type RunSummary } from '../agent/runner';
import { packageRoot } from '../native';
import { parseMemoryUrl, SharedMemory } from './shared';

export const MAX_ACTORS = 64;

interface Manifest {
  version: 1;
  runs: { agent: string; seed: number; dir: string }[];
  memory?: string;
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** One actor, in this process: the run in `dir` (config.json) with the shared memory. */
export async function runActor(dir: string, memoryUrl: string, io: CliIO): Promise<RunSummary> {
  const { url, name } = parseMemoryUrl(memoryUrl);
  const config = configFromDisk(readJson(path.join(dir, 'config.json')), path.join(dir, 'config.json'));
  let shared: SharedMemory | undefined;
  try {
    const summary = await runTraining(
      config,
      dir,
      {
        signal: io.signal,
        sharedMemory: async (own) => {
          shared = await SharedMemory.open({
            url,
            name,
            memory: { dim: own.dim, kernel: own.kernel, policy: own.policy, merge: own.merge },
            onError: (e) => io.stderr(`memq run: redis ${url}: ${e.message}\n`),
          });
          return shared.memory;
        },
      },
      true,
    );
    if (shared) {
      // A snapshot at the end of each actor: the next actor to join starts from it.
      const snap = await shared.snapshot().catch(() => undefined);
      fs.writeFileSync(path.join(dir, 'shared.json'), JSON.stringify({ memory: memoryUrl, actor: shared.actorId, snapshot: snap ?? null, ...shared.stats() }, null, 2) + '\n');
    }
    return summary;
  } finally {
    await shared?.close();
  }
}

/** The parent: lays out the run (new) or reads it (resume), runs its actors as child processes. */
export async function runShared(
  flags: Record<string, any>,
  io: CliIO,
  buildConfigs: (flags: Record<string, any>) => { configs: RunConfig[] },
): Promise<number> {
  const memoryUrl: string | undefined = flags.memory;
  if (memoryUrl === undefined) throw new CliError('memq run: --actors needs --memory redis://HOST:PORT/NAME (the memory the actors share)');
  try {
    parseMemoryUrl(memoryUrl);
  } catch (e) {
    throw new CliError(`memq run: --memory: ${(e as Error).message}`);
  }
  const actors = flags.actors ?? 1;
  if (!Number.isInteger(actors) || actors < 1 || actors > MAX_ACTORS) throw new CliError(`memq run: --actors must be an integer in [1, ${MAX_ACTORS}], got ${actors}`);
  let root: string;
  let manifest: Manifest;
  if (flags.resume !== undefined) {
    const conflicting = ['env', 'episodes', 'eval-every', 'eval-games', 'demos', 'seed', 'config', 'out', 'prior', 'actors'].filter((k) => flags[k] !== undefined);
    if (conflicting.length || flags.agent.length) throw new CliError(`memq run: --resume continues a run with its saved configs and actors; drop --${conflicting[0] ?? 'agent'}`);
    root = path.resolve(flags.resume);
    if (!fs.existsSync(path.join(root, 'run.json'))) {
      if (!fs.existsSync(path.join(root, 'config.json'))) throw new CliError(`memq run: --resume ${flags.resume}: not a memq run directory (no run.json or config.json)`);
      // One actor's directory: run it here (this is what the parent starts per actor).
      const s = await runActor(root, memoryUrl, io);
      if (flags.json) io.stdout(JSON.stringify(s, null, 2) + '\n');
      return s.status === 'complete' ? 0 : 130;
    }
    manifest = readJson<Manifest>(path.join(root, 'run.json'));
  } else {
    if (flags.seeds !== 1) throw new CliError('memq run: with --memory, --actors N gives each actor its own seed (seed .. seed+N-1); drop --seeds');
    const agents: string[] = flags.agent.length ? flags.agent : ['memq'];
    if (agents.some((a) => a !== 'memq')) throw new CliError(`memq run: a shared memory is for the memq agent, got --agent ${agents.filter((a) => a !== 'memq')[0]}`);
    const { configs } = buildConfigs({ ...flags, agent: ['memq'], seeds: actors });
    for (const c of configs) {
      if (c.memq.bandwidthRule !== 'fixed') throw new CliError(`memq run: a shared memory needs memq.bandwidthRule 'fixed' (a per-actor bandwidth would fork the replicas), got '${c.memq.bandwidthRule}'`);
    }
    root = path.resolve(flags.out ?? path.join('runs', new Date().toISOString().replace(/[:T]/g, '-').replace(/\..*/, '')));
    if (fs.existsSync(path.join(root, 'run.json')) || fs.existsSync(path.join(root, 'config.json'))) {
      throw new CliError(`memq run: --out ${root} already holds a run; use --resume ${root} --memory ${memoryUrl} to continue it, or another --out`);
    }
    manifest = { version: 1, memory: memoryUrl, runs: configs.map((c) => ({ agent: c.agent, seed: c.seed, dir: `memq-seed${c.seed}` })) };
    fs.mkdirSync(root, { recursive: true });
    configs.forEach((c, i) => {
      const d = path.join(root, manifest.runs[i].dir);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(c, null, 2) + '\n');
    });
    fs.writeFileSync(path.join(root, 'run.json'), JSON.stringify(manifest, null, 2) + '\n');
    if (!flags.json) io.stderr(`memq run: ${configs.length} actor(s) of ${configs[0].episodes} episodes on ${configs[0].env} sharing ${memoryUrl} -> ${root}\n`);
  }

  // Each actor a child process (its own event loop and native index), like a sweep's cells.
  const cli = path.join(packageRoot(), 'bin', 'memq.js');
  const threads = Math.max(1, Math.floor(os.cpus().length / manifest.runs.length));
  const children = new Map<string, ChildProcess>();
  const onAbort = () => {
    for (const c of children.values()) c.kill('SIGINT');
  };
  io.signal?.addEventListener('abort', onAbort, { once: true });
  const t0 = Date.now();
  const codes = await Promise.all(
    manifest.runs.map(async (r) => {
      const dir = path.join(root, r.dir);
      const sfile = path.join(dir, 'summary.json');
      if (fs.existsSync(sfile) && readJson<RunSummary>(sfile).status === 'complete') return 0;
      const log = fs.openSync(path.join(dir, 'log.txt'), 'a');
      const env = { ...process.env };
      if (env.MEMQ_THREADS === undefined) env.MEMQ_THREADS = String(threads);
      const child = spawn(process.execPath, [cli, 'run', '--resume', dir, '--memory', memoryUrl, '--json'], { detached: true, stdio: ['ignore', log, log, 'ipc'], env });
      fs.closeSync(log);
      children.set(r.dir, child);
      if (!flags.json) io.stderr(`actor ${r.dir}: started (pid ${child.pid})\n`);
      const code = await new Promise<number>((resolve) => {
        child.on('error', () => resolve(-1));
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : 1)));
      });
      children.delete(r.dir);
      if (!flags.json) io.stderr(`actor ${r.dir}: exit ${code} after ${((Date.now() - t0) / 1000).toFixed(0)} s${code !== 0 && code !== 130 ? ` (log ${path.join(dir, 'log.txt')})` : ''}\n`);
      return code;
    }),
  );
  io.signal?.removeEventListener('abort', onAbort);
  const summaries: RunSummary[] = [];
  const shared: Record<string, unknown>[] = [];
  for (const r of manifest.runs) {
    const dir = path.join(root, r.dir);
    if (fs.existsSync(path.join(dir, 'summary.json'))) summaries.push(readJson(path.join(dir, 'summary.json')));
    if (fs.existsSync(path.join(dir, "shared.json"))) shared.push({ ...readJson<Record<string, unknown>>(path.join(dir, "shared.json")), dir: r.dir });
  }
  const failed = codes.filter((c) => c !== 0 && c !== 130).length;
  const interrupted = io.signal?.aborted || codes.some((c) => c === 130);
  if (flags.json) {
    io.stdout(JSON.stringify({ root, memory: memoryUrl, summaries, shared }, null, 2) + '\n');
  } else {
    const { summaryTable } = await import('../cli/commands/compare');
    io.stdout('\n' + summaryTable(summaries) + '\n');
    for (const s of shared) {
      io.stdout(`${s.dir}: applied ${s.applied} batches (${s.appliedOwn} own), replica lag mean ${Number(s.lagMeanMs).toFixed(1)} ms, max ${Number(s.lagMaxMs).toFixed(1)} ms; write ${Number(s.writeMeanMs).toFixed(1)} ms\n`);
    }
    io.stdout(`outputs: ${root}\n`);
    if (interrupted || failed) io.stdout(`continue: memq run --resume ${root} --memory ${memoryUrl}\n`);
  }
  return failed ? 1 : interrupted ? 130 : 0;
}
