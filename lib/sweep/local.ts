/**
 * The local executor of a sweep: runs the cells that are not done as `memq run --resume CELL`
 * child processes, up to `parallel` at once. Each child writes its own run directory, so a
 * sweep interrupted by Ctrl-C, a crash or a killed process continues on the next call where
 * every cell stopped (a finished cell is never run again; a partial one resumes from its
 * checkpoint; a cell whose process failed is retried).
 *
 * Children run in their own process group, so a terminal's Ctrl-C reaches only this process,
 * which forwards exactly one SIGINT to each child (a second one would make a child quit
 * without saving). Each child also holds an IPC channel to this process and stops cleanly when
 * it closes, so killing the sweep (even with SIGKILL) stops its cells within an episode.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cellDir, EXIT_FILE, readSweepFile, sweepStatus } from './index';
import type { ExecutorResult, SweepExecutor } from './executor';

export interface LocalOptions {
  /** Cells at once (default: the number of cores). */
  parallel?: number;
  /** Aborting stops launching cells and interrupts the running ones (they checkpoint). */
  signal?: AbortSignal;
  /** The memq CLI script to run cells with (bin/memq.js). */
  cliPath: string;
  /** MEMQ_THREADS for each cell (default: cores / parallel, at least 1), unless the caller's environment sets it. */
  threadsPerCell?: number;
  onEvent?: (e: SweepEvent) => void;
}

export type SweepEvent =
  | { kind: 'start'; id: string; index: number; total: number; pid: number; resumed: boolean }
  | { kind: 'end'; id: string; index: number; total: number; state: 'done' | 'interrupted' | 'failed'; code: number | null; seconds: number; log: string }
  | { kind: 'wait'; id: string; pid: number };

export type LocalResult = ExecutorResult;

const LOCK = 'running.pid';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs every cell of the sweep in `root` that is not done yet. */
export async function runSweepLocal(root: string, opts: LocalOptions): Promise<LocalResult> {
  const file = readSweepFile(root);
  const cores = Math.max(1, os.cpus().length);
  const parallel = Math.max(1, Math.min(opts.parallel ?? cores, 256));
  const threads = opts.threadsPerCell ?? Math.max(1, Math.floor(cores / parallel));
  const todo = sweepStatus(root).filter((c) => c.state !== 'done');
  const total = file.cells.length;
  const indexOf = new Map(file.cells.map((c, i) => [c.id, i + 1]));
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

  const runCell = async (cell: (typeof todo)[number]): Promise<void> => {
    const dir = cellDir(root, cell.id);
    const lock = path.join(dir, LOCK);
    // A process from an earlier sweep call may still be finishing this cell (it was orphaned and
    // is checkpointing): wait for it instead of running the cell twice.
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
    fs.rmSync(path.join(dir, EXIT_FILE), { force: true });
    const log = path.join(dir, 'log.txt');
    const fd = fs.openSync(log, 'a');
    const env = { ...process.env };
    if (env.MEMQ_THREADS === undefined) env.MEMQ_THREADS = String(threads);
    const t0 = Date.now();
    const child = spawn(process.execPath, [opts.cliPath, 'run', '--resume', dir, '--json'], {
      detached: true,
      stdio: ['ignore', fd, fd, 'ipc'],
      env,
    });
    fs.closeSync(fd);
    const childPid = child.pid ?? -1;
    running.set(cell.id, child);
    fs.writeFileSync(lock, String(childPid));
    opts.onEvent?.({ kind: 'start', id: cell.id, index: indexOf.get(cell.id)!, total, pid: childPid, resumed: cell.state === 'partial' });
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(-1));
      child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : null)));
    });
    running.delete(cell.id);
    fs.rmSync(lock, { force: true });
    const state = code === 0 ? 'done' : code === 130 ? 'interrupted' : 'failed';
    if (state === 'failed') {
      failed.push(cell.id);
      fs.writeFileSync(path.join(dir, EXIT_FILE), JSON.stringify({ code, log }) + '\n');
    }
    opts.onEvent?.({ kind: 'end', id: cell.id, index: indexOf.get(cell.id)!, total, state, code, seconds: (Date.now() - t0) / 1000, log });
  };

  const worker = async () => {
    while (!stopped && next < todo.length) {
      const cell = todo[next++];
      await runCell(cell);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, todo.length) }, worker));
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  const status = sweepStatus(root);
  return { done: status.filter((c) => c.state === 'done').length, failed, interrupted: stopped, status };
}

export const localExecutor: SweepExecutor<LocalOptions> = { name: 'local', run: runSweepLocal };
