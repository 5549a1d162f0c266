/**
 * The Slurm executor of a sweep: the cells that are not done become one `sbatch --array` job on
 * a cluster that shares the sweep directory (a network file system). Array task i runs cell i
 * of sweep.json (the list in DIR/slurm/cells.txt) as `node <memq>/bin/memq.js run --resume
 * CELL_DIR`, exactly what the local executor runs, so `memq sweep status` and `memq compare`
 * read the result the same way, and a cell interrupted on one executor resumes on the other.
 *
 *   DIR/slurm/array.sbatch    the job script (rewritten at each submission; its --array line
 *                             lists the cells of the latest one, so `sbatch` of it by hand works)
 *   DIR/slurm/cells.txt       cell ids in sweep.json order: line i+1 is array task i
 *   DIR/slurm/jobs.jsonl      one line per submission: job id, array, cells
 *   DIR/slurm/logs/%A_%a.out  Slurm's own output per task (the cell's output goes to its log.txt)
 *
 * A task ending with an exit code other than 0 (done) or 130 (interrupted: checkpointed, to be
 * resumed) writes the cell's exit.json as the local executor does; with --wait, tasks that
 * sacct reports as failed without one (killed for memory, node failure) get one too.
 *
 * sbatch/squeue/sacct are called through a SlurmCommands object, so tests can check what is
 * submitted without a cluster.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cellDir, EXIT_FILE, readSweepFile, sweepStatus, type CellStatus } from './index';
import type { ExecutorResult, SweepExecutor } from './executor';
import type { SlurmSettings } from './slurmSettings';

export { checkSlurmSettings, SLURM_FIELDS, type SlurmSettings } from './slurmSettings';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** How the executor talks to Slurm (the real binaries, or a test double). */
export interface SlurmCommands {
  run(program: 'sbatch' | 'squeue' | 'sacct', args: string[]): Promise<CommandResult>;
}

/** The Slurm client binaries on PATH (a missing binary answers code 127); `env` e.g. sets SLURM_CONF. */
export function slurmCommands(env: NodeJS.ProcessEnv = process.env): SlurmCommands {
  return {
    run(program, args) {
      return new Promise((resolve) => {
        execFile(program, args, { timeout: 60_000, maxBuffer: 64 << 20, env }, (err, stdout, stderr) => {
          const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
          const code = !e ? 0 : e.code === 'ENOENT' ? 127 : typeof e.code === 'number' ? e.code : 1;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) + (e && e.code === 'ENOENT' ? `${program}: not found on PATH` : '') });
        });
      });
    },
  };
}

export interface SlurmOptions {
  settings: SlurmSettings;
  /** The memq CLI script the tasks run (bin/memq.js; the same path must exist on the nodes). */
  cliPath: string;
  /** The node binary the tasks run (default: this process's). */
  nodePath?: string;
  commands?: SlurmCommands;
  /** Poll until the array finishes (squeue), then reconcile failures (sacct) and report. */
  wait?: boolean;
  /** Poll interval for --wait (default 10 s). */
  pollMs?: number;
  /** Aborting stops waiting (the submitted job keeps running; `memq sweep status` follows it). */
  signal?: AbortSignal;
  onEvent?: (e: SlurmEvent) => void;
}

export type SlurmEvent =
  | { kind: 'submit'; job: string; cells: number; array: string; script: string }
  | { kind: 'skip'; reason: 'done' | 'queued'; cells: string[] }
  | { kind: 'nothing'; reason: string }
  | { kind: 'poll'; job: string; active: number; done: number; total: number }
  | { kind: 'sacct'; job: string; ok: boolean; message: string };

export interface SlurmResult extends ExecutorResult {
  /** The job id submitted (undefined when every cell was done or already queued). */
  job?: string;
  /** Cells in the submitted array. */
  submitted: string[];
  /** True when the call waited for the array to finish. */
  waited: boolean;
}

export class SlurmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SlurmError';
  }
}

export const SLURM_DIR = 'slurm';
export const SCRIPT_FILE = 'array.sbatch';
export const CELLS_FILE = 'cells.txt';
export const JOBS_FILE = 'jobs.jsonl';

/** Sorted distinct indices → Slurm's array syntax, e.g. [0,1,2,3,5,7,8,9] → "0-3,5,7-9". */
export function arraySpec(indices: number[]): string {
  const xs = [...new Set(indices)].sort((a, b) => a - b);
  for (const x of xs) if (!Number.isInteger(x) || x < 0) throw new RangeError(`arraySpec: indices must be integers >= 0, got ${x}`);
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(j === i ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** A word for the shell, single-quoted. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface ScriptParams {
  root: string;
  name: string;
  array: string;
  settings: SlurmSettings;
  nodePath: string;
  cliPath: string;
}

/** The array job script. Pure: the same parameters give the same text. */
export function sbatchScript(p: ScriptParams): string {
  const s = p.settings;
  const logs = path.join(p.root, SLURM_DIR, 'logs');
  const sig = s.signalSeconds ?? 120;
  const lines = [
    '#!/bin/bash',
    `# memq sweep, Slurm executor: array task i runs cell i of ${path.join(p.root, 'sweep.json')}`,
    '# (line i+1 of slurm/cells.txt) as `memq run --resume CELL_DIR`. Written by memq at each',
    '# `memq sweep DIR --executor slurm`; the --array line lists the cells of that submission.',
    `#SBATCH --job-name=${p.name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64)}`,
    `#SBATCH --array=${p.array}${s.maxRunning ? `%${s.maxRunning}` : ''}`,
    `#SBATCH --output=${logs}/%A_%a.out`,
    '#SBATCH --ntasks=1',
  ];
  if (s.partition) lines.push(`#SBATCH --partition=${s.partition}`);
  if (s.time) lines.push(`#SBATCH --time=${s.time}`);
  if (s.cpusPerTask) lines.push(`#SBATCH --cpus-per-task=${s.cpusPerTask}`);
  if (s.gpusPerTask) lines.push(`#SBATCH --gpus-per-task=${s.gpusPerTask}`);
  if (s.mem) lines.push(`#SBATCH --mem=${s.mem}`);
  // SIGUSR1 to the batch shell before the time limit: it forwards SIGINT, the cell checkpoints.
  if (sig > 0) lines.push(`#SBATCH --signal=B:USR1@${sig}`);
  lines.push(
    'set -u',
    `ROOT=${shellQuote(p.root)}`,
    `NODE=${shellQuote(p.nodePath)}`,
    `MEMQ=${shellQuote(p.cliPath)}`,
    `CELL=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$ROOT/${SLURM_DIR}/${CELLS_FILE}")`,
    'if [ -z "$CELL" ]; then',
    `  echo "memq: array task $SLURM_ARRAY_TASK_ID has no cell in $ROOT/${SLURM_DIR}/${CELLS_FILE}" >&2`,
    '  exit 2',
    'fi',
    'DIR="$ROOT/cells/$CELL"',
    'if [ -z "${MEMQ_THREADS:-}" ]; then export MEMQ_THREADS="${SLURM_CPUS_PER_TASK:-1}"; fi',
    `rm -f "$DIR/${EXIT_FILE}"`,
    'echo "memq: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname): cell $CELL"',
    '"$NODE" "$MEMQ" run --resume "$DIR" --json >> "$DIR/log.txt" 2>&1 &',
    'CHILD=$!',
    "trap 'kill -INT \"$CHILD\" 2>/dev/null' USR1 TERM",
    'wait "$CHILD"; CODE=$?',
    'while [ "$CODE" -gt 128 ] && kill -0 "$CHILD" 2>/dev/null; do wait "$CHILD"; CODE=$?; done',
    'echo "memq: cell $CELL exited with code $CODE"',
    'if [ "$CODE" -ne 0 ] && [ "$CODE" -ne 130 ]; then',
    `  "$NODE" -e 'const [f, c, l, j] = process.argv.slice(1); require("fs").writeFileSync(f, JSON.stringify({ code: Number(c), log: l, slurm: j }) + "\\n")' \\`,
    `    "$DIR/${EXIT_FILE}" "$CODE" "$DIR/log.txt" "\${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID}"`,
    'fi',
    'exit "$CODE"',
    '',
  );
  return lines.join('\n');
}

interface JobLine {
  job: string;
  array: string;
  cells: string[];
  submitted: string;
}

function readJobs(root: string): JobLine[] {
  const f = path.join(root, SLURM_DIR, JOBS_FILE);
  if (!fs.existsSync(f)) return [];
  const out: JobLine[] = [];
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      /* a torn last line: ignore */
    }
  }
  return out;
}

/** Array tasks of `jobs` still pending or running: "JOB_INDEX" → state (squeue -r). */
async function activeTasks(cmd: SlurmCommands, jobs: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (jobs.length === 0) return out;
  const r = await cmd.run('squeue', ['-h', '-r', '-j', jobs.join(','), '-o', '%i %T']);
  if (r.code !== 0) {
    // Jobs that left the controller's memory are reported as invalid: nothing of them is active.
    if (/invalid job id/i.test(r.stderr)) return out;
    throw new SlurmError(`squeue failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  for (const line of r.stdout.split('\n')) {
    const [id, state] = line.trim().split(/\s+/);
    if (id && state) out.set(id, state);
  }
  return out;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** sacct states that mean the task ended without finishing its cell cleanly. */
const BAD_STATES = ['FAILED', 'TIMEOUT', 'OUT_OF_MEMORY', 'NODE_FAIL', 'CANCELLED', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED'];

/**
 * Writes exit.json for cells whose task sacct reports as ended badly while the cell is neither
 * done nor already marked failed (a task killed before its script could write one).
 */
async function reconcileWithSacct(root: string, job: JobLine, cmd: SlurmCommands, onEvent?: (e: SlurmEvent) => void): Promise<void> {
  const r = await cmd.run('sacct', ['-n', '-P', '-X', '-j', job.job, '-o', 'JobID,State,ExitCode']);
  if (r.code !== 0) {
    onEvent?.({ kind: 'sacct', job: job.job, ok: false, message: (r.stderr || r.stdout).trim().split('\n')[0] ?? '' });
    return;
  }
  const file = readSweepFile(root);
  const status = new Map(sweepStatus(root).map((c) => [c.id, c]));
  let marked = 0;
  for (const line of r.stdout.split('\n')) {
    const [jobId, stateRaw, exitCode] = line.trim().split('|');
    const m = /^(\d+)_(\d+)$/.exec(jobId ?? '');
    if (!m || m[1] !== job.job) continue;
    const state = (stateRaw ?? '').split(' ')[0];
    if (!BAD_STATES.includes(state)) continue;
    const cell = file.cells[Number(m[2])];
    const st = cell && status.get(cell.id);
    if (!st || st.state === 'done' || st.state === 'failed') continue;
    const dir = cellDir(root, cell.id);
    const [code, sig] = (exitCode ?? '').split(':').map(Number);
    const exit = Number.isFinite(code) && code !== 0 ? code : Number.isFinite(sig) && sig > 0 ? 128 + sig : 1;
    fs.writeFileSync(path.join(dir, EXIT_FILE), JSON.stringify({ code: exit, log: path.join(dir, 'log.txt'), slurm: jobId, state }) + '\n');
    marked++;
  }
  onEvent?.({ kind: 'sacct', job: job.job, ok: true, message: `${marked} task(s) marked failed from sacct` });
}

/**
 * Submits the cells of the sweep in `root` that are not done (and not still queued or running
 * from an earlier submission) as one array job; with `wait`, follows it to the end.
 */
export async function runSweepSlurm(root: string, opts: SlurmOptions): Promise<SlurmResult> {
  const cmd = opts.commands ?? slurmCommands();
  const file = readSweepFile(root);
  const sdir = path.join(root, SLURM_DIR);
  fs.mkdirSync(path.join(sdir, 'logs'), { recursive: true });
  const ids = file.cells.map((c) => c.id);
  const cellsTxt = ids.join('\n') + '\n';
  const cellsFile = path.join(sdir, CELLS_FILE);
  if (!fs.existsSync(cellsFile) || fs.readFileSync(cellsFile, 'utf8') !== cellsTxt) fs.writeFileSync(cellsFile, cellsTxt);

  const before = sweepStatus(root);
  const doneIds = before.filter((c) => c.state === 'done').map((c) => c.id);
  if (doneIds.length) opts.onEvent?.({ kind: 'skip', reason: 'done', cells: doneIds });
  // Cells whose task of an earlier submission is still pending or running are not submitted twice.
  const jobs = readJobs(root);
  const active = await activeTasks(cmd, [...new Set(jobs.map((j) => j.job))]);
  const queued = new Set<string>();
  for (const key of active.keys()) {
    const m = /^(\d+)_(\d+)$/.exec(key);
    if (m) queued.add(ids[Number(m[2])]);
    else {
      // A pending array not yet split into tasks is listed as JOB_[a-b]: all its cells count.
      const j = jobs.find((x) => key.startsWith(`${x.job}_`));
      for (const c of j?.cells ?? []) queued.add(c);
    }
  }
  const queuedIds = before.filter((c) => c.state !== 'done' && queued.has(c.id)).map((c) => c.id);
  if (queuedIds.length) opts.onEvent?.({ kind: 'skip', reason: 'queued', cells: queuedIds });
  const todo = before.filter((c) => c.state !== 'done' && !queued.has(c.id));
  const indexOf = new Map(ids.map((id, i) => [id, i]));

  let job: string | undefined;
  if (todo.length === 0) {
    opts.onEvent?.({ kind: 'nothing', reason: doneIds.length === ids.length ? 'every cell is done' : 'every unfinished cell is already queued or running' });
  } else {
    const array = arraySpec(todo.map((c) => indexOf.get(c.id)!));
    const script = sbatchScript({
      root,
      name: `memq-${file.name ?? path.basename(root)}`,
      array,
      settings: opts.settings,
      nodePath: opts.nodePath ?? process.execPath,
      cliPath: opts.cliPath,
    });
    const scriptFile = path.join(sdir, SCRIPT_FILE);
    fs.writeFileSync(scriptFile, script, { mode: 0o755 });
    // A failed cell's exit.json is cleared by its task when it starts; clear it now too, so the
    // status does not say failed while the retry waits in the queue.
    for (const c of todo) if (c.state === 'failed') fs.rmSync(path.join(cellDir(root, c.id), EXIT_FILE), { force: true });
    const r = await cmd.run('sbatch', ['--parsable', scriptFile]);
    if (r.code !== 0) throw new SlurmError(`sbatch ${scriptFile} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    job = r.stdout.trim().split(';')[0].split('\n').pop()!.trim();
    if (!/^\d+$/.test(job)) throw new SlurmError(`sbatch answered ${JSON.stringify(r.stdout.trim())}, not a job id`);
    const line: JobLine = { job, array, cells: todo.map((c) => c.id), submitted: new Date().toISOString() };
    fs.appendFileSync(path.join(sdir, JOBS_FILE), JSON.stringify(line) + '\n');
    opts.onEvent?.({ kind: 'submit', job, cells: todo.length, array, script: scriptFile });
  }

  const waitFor = job ? [job] : [...new Set(jobs.filter((j) => j.cells.some((c) => queued.has(c))).map((j) => j.job))];
  let interrupted = false;
  if (opts.wait && waitFor.length) {
    const poll = opts.pollMs ?? 10_000;
    for (;;) {
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      const act = await activeTasks(cmd, waitFor);
      const st = sweepStatus(root);
      opts.onEvent?.({ kind: 'poll', job: waitFor.join(','), active: act.size, done: st.filter((c) => c.state === 'done').length, total: st.length });
      if (act.size === 0) break;
      await sleep(poll, opts.signal);
    }
    if (!interrupted) {
      for (const j of readJobs(root).filter((x) => waitFor.includes(x.job))) await reconcileWithSacct(root, j, cmd, opts.onEvent);
    }
  }
  const status: CellStatus[] = sweepStatus(root);
  const submitted = todo.map((c) => c.id);
  const waited = !!opts.wait && !interrupted;
  const failed = waited ? status.filter((c) => c.state === 'failed' && (submitted.includes(c.id) || queued.has(c.id))).map((c) => c.id) : [];
  return { done: status.filter((c) => c.state === 'done').length, failed, interrupted, status, job, submitted, waited };
}

export const slurmExecutor: SweepExecutor<SlurmOptions> = { name: 'slurm', run: runSweepSlurm };
