/**
 * What every sweep executor shares: it runs the cells of a sweep directory that are not done,
 * each as `memq run --resume CELL_DIR`, and the directory alone says how far it got
 * (sweepStatus). The local executor (local.ts) runs cells as child processes of this one; the
 * Slurm executor (slurm.ts) submits them as a job array to a cluster sharing the directory.
 */
import type { CellStatus } from './index';

export const EXECUTORS = ['local', 'slurm'] as const;
export type ExecutorName = (typeof EXECUTORS)[number];

export interface ExecutorResult {
  /** Cells done (summary.json complete) when the executor returned. */
  done: number;
  /** Cells whose process failed in this call (an exit.json was written for each). */
  failed: string[];
  /** True when the caller's signal stopped it. */
  interrupted: boolean;
  status: CellStatus[];
}

export interface SweepExecutor<Options> {
  readonly name: ExecutorName;
  run(root: string, opts: Options): Promise<ExecutorResult>;
}
