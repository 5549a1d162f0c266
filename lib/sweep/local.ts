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
 * The process pool itself (locks, IPC, exit records) lives in pool.ts, shared with memq run.
 */
import { cellDir, readSweepFile, sweepStatus } from './index';
import type { ExecutorResult, SweepExecutor } from './executor';
import { runCellProcesses, type PoolEvent } from './pool';

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

export type SweepEvent = PoolEvent;

export type LocalResult = ExecutorResult;

/** Runs every cell of the sweep in `root` that is not done yet (the process pool of pool.ts). */
export async function runSweepLocal(root: string, opts: LocalOptions): Promise<LocalResult> {
  const file = readSweepFile(root);
  const indexOf = new Map(file.cells.map((c, i) => [c.id, i + 1]));
  const todo = sweepStatus(root)
    .filter((c) => c.state !== 'done')
    .map((c) => ({ id: c.id, dir: cellDir(root, c.id), index: indexOf.get(c.id)!, resumed: c.state === 'partial' }));
  const { failed, interrupted } = await runCellProcesses(todo, {
    parallel: opts.parallel,
    signal: opts.signal,
    cliPath: opts.cliPath,
    threadsPerCell: opts.threadsPerCell,
    total: file.cells.length,
    onEvent: opts.onEvent,
  });
  const status = sweepStatus(root);
  return { done: status.filter((c) => c.state === 'done').length, failed, interrupted, status };
}

export const localExecutor: SweepExecutor<LocalOptions> = { name: 'local', run: runSweepLocal };
