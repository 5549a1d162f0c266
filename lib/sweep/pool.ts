/**
 * Runs memq run directories as child processes (`memq run --resume DIR`), up to `parallel` at
 * once: the engine under `memq sweep`'s local executor and `memq run --parallel`.
 *
 * Children run in their own process group, so a terminal's Ctrl-C reaches only this process,
 * which forwards exactly one SIGINT to each child (a second one would make a child quit
 * without saving). Each child also holds an IPC channel to this process and stops cleanly when
 * it closes, so killing this process (even with SIGKILL) stops its children within an episode.
 * A directory whose process from an earlier call is still finishing is waited for, never run
 * twice (running.pid); a failed process leaves exit.json with its exit code and log.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface PoolCell {
  id: string;
  dir: string;
  /** 1-based position for progress lines. */
  index: number;
  /** True when the directory already holds progress (for the progress line). */
  resumed?: boolean;
}

export type PoolEvent =
  | { kind: 'start'; id: string; index: number; total: number; pid: number; resumed: boolean }
  | { kind: 'end'; id: string; index: number; total: number; state: 'done' | 'interrupted' | 'failed'; code: number | null; seconds: number; log: string }
  | { kind: 'wait'; id: string; pid: number };

export interface PoolOptions {
  parallel?: number;
  signal?: AbortSignal;
  /** The memq CLI script (bin/memq.js). */
  cliPath: string;
  /** MEMQ_THREADS per child (default: cores / parallel, at least 1) unless the environment sets it. */
  threadsPerCell?: number;
  /** Extra arguments after `run --resume DIR` (default ['--json']). */
  extraArgs?: string[];
  total?: number;
  onEvent?: (e: PoolEvent) => void;
}

export const LOCK_FILE = 'running.pid';
export const EXIT_FILE = 'exit.json';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs each cell's directory to completion (or interruption); returns the ids that failed and whether it was stopped. */
export async function runCellProcesses(cells: PoolCell[], opts: PoolOptions): Promise<{ failed: string[]; interrupted: boolean }> {
  const cores = Math.max(1, os.cpus().length);
  const parallel = Math.max(1, Math.min(opts.parallel ?? cores, 256));
  const threads = opts.threadsPerCell ?? Math.max(1, Math.floor(cores / parallel));
  const total = opts.total ?? cells.length;
  const failed: string[] = [];
  const running = new Map<string, ChildProcess>();
  let next = 0;
  let stopped = false;
  const onAbort = () => {
    stopped = true;
    for (const child of running.values()) {
      try {
        child.kill('SIGINT');
      } catch {
        /* already gone */
      }
    }
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stopped = true;

  const runCell = async (cell: PoolCell): Promise<void> => {
    const lock = path.join(cell.dir, LOCK_FILE);
    try {
      const pid = Number(fs.readFileSync(lock, 'utf8'));
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        opts.onEvent?.({ kind: 'wait', id: cell.id, pid });
        while (alive(pid) && !stopped) await sleep(200);
        if (stopped) return;
      }
    } catch {
      /* no lock */
    }
    fs.rmSync(path.join(cell.dir, EXIT_FILE), { force: true });
    const log = path.join(cell.dir, 'log.txt');
    const fd = fs.openSync(log, 'a');
    const env = { ...process.env };
    if (env.MEMQ_THREADS === undefined) env.MEMQ_THREADS = String(threads);
    const t0 = Date.now();
    const child = spawn(process.execPath, [opts.cliPath, 'run', '--resume', cell.dir, ...(opts.extraArgs ?? ['--json'])], {
      detached: true,
      stdio: ['ignore', fd, fd, 'ipc'],
      env,
    });
    fs.closeSync(fd);
    const childPid = child.pid ?? -1;
    running.set(cell.id, child);
    fs.writeFileSync(lock, String(childPid));
    opts.onEvent?.({ kind: 'start', id: cell.id, index: cell.index, total, pid: childPid, resumed: cell.resumed ?? false });
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(-1));
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : null)));
    });
    running.delete(cell.id);
    fs.rmSync(lock, { force: true });
    const state = code === 0 ? 'done' : code === 130 ? 'interrupted' : 'failed';
    if (state === 'failed') {
      failed.push(cell.id);
      fs.writeFileSync(path.join(cell.dir, EXIT_FILE), JSON.stringify({ code, log }) + '\n');
    }
    opts.onEvent?.({ kind: 'end', id: cell.id, index: cell.index, total, state, code, seconds: (Date.now() - t0) / 1000, log });
  };

  const worker = async () => {
    while (!stopped && next < cells.length) await runCell(cells[next++]);
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, cells.length) }, worker));
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  return { failed, interrupted: stopped };
}
