/**
 * The Slurm executor without a cluster: the script text (exactly), the array of unfinished
 * cells, re-submission, sacct reconciliation, and the generated script itself run by bash with
 * the environment Slurm gives an array task (a fake memq CLI decides each cell's outcome).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { expandSweep, initSweepDir, sweepStatus } from '../../lib/sweep/index';
import { arraySpec, runSweepSlurm, sbatchScript, shellQuote, type CommandResult, type SlurmCommands } from '../../lib/sweep/slurm';
import { checkSlurmSettings } from '../../lib/sweep/slurmSettings';
import { main } from '../../lib/cli/main';

const hasBash = spawnSync('bash', ['-c', 'true']).status === 0;

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fake `memq` CLI: `run --resume DIR` completes the cell unless DIR's name says fail-N (exit N) or int (130). */
function fakeCli(dir: string): string {
  const f = path.join(dir, 'fake-memq.js');
  fs.writeFileSync(
    f,
    `const fs = require('fs'), path = require('path');
const dir = process.argv[4];
if (process.argv[2] !== 'run' || process.argv[3] !== '--resume' || process.argv[5] !== '--json') process.exit(99);
const plan = JSON.parse(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8'));
console.log('threads', process.env.MEMQ_THREADS);
if (plan.exit) process.exit(plan.exit);
fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify({ status: 'complete', episodes: 5, evals: {}, trainSuccess: plan.seed / 10 }));
`,
  );
  return f;
}

/** A fake Slurm: sbatch runs each array task of the script at once with bash (sequentially). */
class FakeSlurm implements SlurmCommands {
  calls: { program: string; args: string[] }[] = [];
  nextJob = 41;
  active: string[] = [];
  sacct: string | null = null;
  constructor(private readonly execute: boolean) {}
  async run(program: 'sbatch' | 'squeue' | 'sacct', args: string[]): Promise<CommandResult> {
    this.calls.push({ program, args });
    if (program === 'squeue') return { code: 0, stdout: this.active.map((a) => `${a} RUNNING`).join('\n'), stderr: '' };
    if (program === 'sacct') return this.sacct === null ? { code: 1, stdout: '', stderr: 'Slurm accounting storage is disabled' } : { code: 0, stdout: this.sacct, stderr: '' };
    const job = String(this.nextJob++);
    if (this.execute) {
      const script = fs.readFileSync(args[args.length - 1], 'utf8');
      const spec = /#SBATCH --array=([0-9,-]+)/.exec(script)![1];
      const tasks: number[] = [];
      for (const part of spec.split(',')) {
        const [a, b] = part.split('-').map(Number);
        for (let i = a; i <= (b ?? a); i++) tasks.push(i);
      }
      for (const t of tasks) {
        const r = spawnSync('bash', [args[args.length - 1]], {
          env: { ...process.env, MEMQ_THREADS: '', SLURM_ARRAY_TASK_ID: String(t), SLURM_ARRAY_JOB_ID: job, SLURM_CPUS_PER_TASK: '3' },
          encoding: 'utf8',
        });
        if (r.status === null) throw new Error(`task ${t} died: ${r.stderr}`);
      }
    }
    return { code: 0, stdout: `${job}\n`, stderr: '' };
  }
}

describe('Slurm settings and script', () => {
  it('arraySpec compresses indices into ranges', () => {
    expect(arraySpec([0, 1, 2, 3, 5, 7, 8, 9])).toBe('0-3,5,7-9');
    expect(arraySpec([4])).toBe('4');
    expect(arraySpec([9, 2, 3, 2])).toBe('2-3,9');
    expect(() => arraySpec([-1])).toThrow(RangeError);
  });

  it('checks settings naming the field', () => {
    expect(checkSlurmSettings({ partition: 'gpu', time: '1-02:00:00', gpusPerTask: 1, cpusPerTask: 8, mem: '32G', maxRunning: 100 })).toEqual({
      partition: 'gpu', time: '1-02:00:00', gpusPerTask: 1, cpusPerTask: 8, mem: '32G', maxRunning: 100,
    });
    const bad: [unknown, ErrorConstructor, RegExp][] = [
      [{ time: '2 hours' }, RangeError, /slurm.time must be a Slurm time limit/],
      [{ mem: '4 GB' }, RangeError, /slurm.mem must be a memory size/],
      [{ cpusPerTask: 0 }, RangeError, /slurm.cpusPerTask must be an integer in \[1, 1024\]/],
      [{ gpusPerTask: '1' }, TypeError, /slurm.gpusPerTask must be an integer/],
      [{ partition: 'a b' }, RangeError, /slurm.partition/],
      [{ nodes: 2 }, RangeError, /unknown field 'nodes'/],
      [[], TypeError, /must be an object/],
    ];
    for (const [raw, cls, re] of bad) {
      expect(() => checkSlurmSettings(raw)).toThrow(cls);
      expect(() => checkSlurmSettings(raw)).toThrow(re);
    }
    expect(() => expandSweep({ seeds: [1], slurm: { time: 'soon' } })).toThrow(/sweep file: slurm.time must be/);
  });

  it('writes exactly this script', () => {
    const text = sbatchScript({
      root: "/shared/runs/it's",
      name: 'memq-alpha sweep',
      array: '0-3,5',
      settings: { partition: 'gpu', time: '02:00:00', gpusPerTask: 1, cpusPerTask: 4, mem: '16G', maxRunning: 8 },
      nodePath: '/usr/bin/node',
      cliPath: '/opt/memq/bin/memq.js',
    });
    expect(text).toBe(
      [
        '#!/bin/bash',
        "# memq sweep, Slurm executor: array task i runs cell i of /shared/runs/it's/sweep.json",
        '# (line i+1 of slurm/cells.txt) as `memq run --resume CELL_DIR`. Written by memq at each',
        '# `memq sweep DIR --executor slurm`; the --array line lists the cells of that submission.',
        '#SBATCH --job-name=memq-alpha_sweep',
        '#SBATCH --array=0-3,5%8',
        "#SBATCH --output=/shared/runs/it's/slurm/logs/%A_%a.out",
        '#SBATCH --ntasks=1',
        '#SBATCH --partition=gpu',
        '#SBATCH --time=02:00:00',
        '#SBATCH --cpus-per-task=4',
        '#SBATCH --gpus-per-task=1',
        '#SBATCH --mem=16G',
        '#SBATCH --signal=B:USR1@120',
        'set -u',
        "ROOT='/shared/runs/it'\\''s'",
        "NODE='/usr/bin/node'",
        "MEMQ='/opt/memq/bin/memq.js'",
        'CELL=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$ROOT/slurm/cells.txt")',
        'if [ -z "$CELL" ]; then',
        '  echo "memq: array task $SLURM_ARRAY_TASK_ID has no cell in $ROOT/slurm/cells.txt" >&2',
        '  exit 2',
        'fi',
        'DIR="$ROOT/cells/$CELL"',
        'if [ -z "${MEMQ_THREADS:-}" ]; then export MEMQ_THREADS="${SLURM_CPUS_PER_TASK:-1}"; fi',
        'rm -f "$DIR/exit.json"',
        'echo "memq: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname): cell $CELL"',
        '"$NODE" "$MEMQ" run --resume "$DIR" --json >> "$DIR/log.txt" 2>&1 &',
        'CHILD=$!',
        "trap 'kill -INT \"$CHILD\" 2>/dev/null' USR1 TERM",
        'wait "$CHILD"; CODE=$?',
        'while [ "$CODE" -gt 128 ] && kill -0 "$CHILD" 2>/dev/null; do wait "$CHILD"; CODE=$?; done',
        'echo "memq: cell $CELL exited with code $CODE"',
        'if [ "$CODE" -ne 0 ] && [ "$CODE" -ne 130 ]; then',
        `  "$NODE" -e 'const [f, c, l, j] = process.argv.slice(1); require("fs").writeFileSync(f, JSON.stringify({ code: Number(c), log: l, slurm: j }) + "\\n")' \\`,
        '    "$DIR/exit.json" "$CODE" "$DIR/log.txt" "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        'fi',
        'exit "$CODE"',
        '',
      ].join('\n'),
    );
    // no optional resources, no time-limit signal: only what was asked for
    const plain = sbatchScript({ root: '/r', name: 'n', array: '0', settings: { signalSeconds: 0 }, nodePath: 'node', cliPath: 'm.js' });
    expect(plain).not.toMatch(/--partition|--time|--gpus|--cpus|--mem|--signal/);
    expect(shellQuote("a'b")).toBe("'a'\\''b'");
  });
});

function sweepWithPlans(root: string, outcomes: Record<number, number>): string[] {
  const plan = expandSweep({ base: { env: 'gridworld', episodes: 5 }, grid: { 'memq.alpha': [0.2, 1] }, seeds: [1, 2] });
  initSweepDir(root, plan);
  plan.cells.forEach((c, i) => fs.writeFileSync(path.join(root, 'cells', c.id, 'plan.json'), JSON.stringify({ seed: c.seed, exit: outcomes[i] ?? 0 })));
  return plan.cells.map((c) => c.id);
}

describe.skipIf(!hasBash)('Slurm executor against a fake sbatch that runs the script with bash', () => {
  it('submits the unfinished cells, runs them by array index, records failures in exit.json, resubmits only what is left', async () => {
    const dir = tmp('memq-slurm-unit-');
    const root = path.join(dir, 'sweep');
    const ids = sweepWithPlans(root, { 1: 3, 2: 130 });
    const cli = fakeCli(dir);
    const fake = new FakeSlurm(true);
    const events: string[] = [];
    const r = await runSweepSlurm(root, { settings: { cpusPerTask: 3 }, cliPath: cli, commands: fake, wait: true, pollMs: 1, onEvent: (e) => events.push(e.kind) });
    expect(fake.calls.filter((c) => c.program === 'sbatch').length).toBe(1);
    expect(r.job).toBe('41');
    expect(r.submitted).toEqual(ids);
    expect(fs.readFileSync(path.join(root, 'slurm', 'cells.txt'), 'utf8')).toBe(ids.join('\n') + '\n');
    expect(fs.readFileSync(path.join(root, 'slurm', 'array.sbatch'), 'utf8')).toMatch(/^#SBATCH --array=0-3$/m);
    const st = sweepStatus(root);
    expect(st.map((c) => c.state)).toEqual(['done', 'failed', 'pending', 'done']);
    expect(st[1].exitCode).toBe(3);
    expect(JSON.parse(fs.readFileSync(path.join(root, 'cells', ids[1], 'exit.json'), 'utf8'))).toEqual({ code: 3, log: path.join(root, 'cells', ids[1], 'log.txt'), slurm: '41_1' });
    expect(fs.existsSync(path.join(root, 'cells', ids[2], 'exit.json'))).toBe(false); // 130: interrupted, resumes
    expect(fs.readFileSync(path.join(root, 'cells', ids[0], 'log.txt'), 'utf8')).toMatch(/threads 3/);
    expect(r.failed).toEqual([ids[1]]);
    expect(events).toContain('sacct'); // tried, unavailable here

    // Re-submit: only the failed and the interrupted cell, now both succeeding.
    for (const i of [1, 2]) fs.writeFileSync(path.join(root, 'cells', ids[i], 'plan.json'), JSON.stringify({ seed: 9, exit: 0 }));
    const r2 = await runSweepSlurm(root, { settings: {}, cliPath: cli, commands: fake, wait: true, pollMs: 1 });
    expect(r2.submitted).toEqual([ids[1], ids[2]]);
    expect(fs.readFileSync(path.join(root, 'slurm', 'array.sbatch'), 'utf8')).toMatch(/^#SBATCH --array=1-2$/m);
    expect(sweepStatus(root).every((c) => c.state === 'done')).toBe(true);
    expect(r2.failed).toEqual([]);
    const jobs = fs.readFileSync(path.join(root, 'slurm', 'jobs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(jobs.map((j) => [j.job, j.array])).toEqual([['41', '0-3'], ['42', '1-2']]);
    // Everything done: nothing is submitted.
    const r3 = await runSweepSlurm(root, { settings: {}, cliPath: cli, commands: fake });
    expect(r3.job).toBeUndefined();
    expect(fake.calls.filter((c) => c.program === 'sbatch').length).toBe(2);
  });

  it('does not resubmit cells still queued from an earlier job; sacct marks tasks killed without exit.json', async () => {
    const dir = tmp('memq-slurm-unit2-');
    const root = path.join(dir, 'sweep');
    const ids = sweepWithPlans(root, {});
    const fake = new FakeSlurm(false);
    const cli = fakeCli(dir);
    const r = await runSweepSlurm(root, { settings: {}, cliPath: cli, commands: fake });
    expect(r.job).toBe('41');
    expect(r.waited).toBe(false);
    // Task 0 finished, 1 still running, 2 pending, 3 killed by the OOM killer before writing anything.
    fs.writeFileSync(path.join(root, 'cells', ids[0], 'summary.json'), JSON.stringify({ status: 'complete', episodes: 5 }));
    fs.writeFileSync(path.join(root, 'cells', ids[3], 'metrics.jsonl'), '{}\n');
    fake.active = ['41_1', '41_2'];
    const r2 = await runSweepSlurm(root, { settings: {}, cliPath: cli, commands: fake });
    expect(r2.submitted).toEqual([ids[3]]);
    expect(fs.readFileSync(path.join(root, 'slurm', 'array.sbatch'), 'utf8')).toMatch(/^#SBATCH --array=3$/m);
    // Waiting on job 41 alone (nothing new to submit once 42 is recorded and active too).
    fake.active = [];
    fake.sacct = ['41_0|COMPLETED|0:0', '41_1|OUT_OF_MEMORY|0:9', '41_2|CANCELLED by 0|0:15', '42_3|COMPLETED|0:0'].join('\n') + '\n';
    fs.writeFileSync(path.join(root, 'cells', ids[3], 'summary.json'), JSON.stringify({ status: 'complete', episodes: 5 }));
    const queued = { ...fake, run: fake.run.bind(fake) };
    let squeueCalls = 0;
    queued.run = async (p, a) => {
      if (p === 'squeue' && squeueCalls++ === 0) return { code: 0, stdout: '41_1 RUNNING\n41_2 PENDING\n', stderr: '' };
      return fake.run(p, a);
    };
    const r3 = await runSweepSlurm(root, { settings: {}, cliPath: cli, commands: queued, wait: true, pollMs: 1 });
    expect(r3.job).toBeUndefined(); // 1 and 2 were queued: nothing submitted, but waited for
    expect(r3.waited).toBe(true);
    const st = sweepStatus(root);
    expect(st.map((c) => c.state)).toEqual(['done', 'failed', 'failed', 'done']);
    expect(st[1].exitCode).toBe(128 + 9);
    expect(st[2].exitCode).toBe(128 + 15);
    expect(r3.failed).toEqual([ids[1], ids[2]]);
  });
});

describe('memq sweep --executor flags', () => {
  it('refuses bad flags before creating anything', async () => {
    const dir = tmp('memq-slurm-cli-');
    const spec = path.join(dir, 's.json');
    fs.writeFileSync(spec, JSON.stringify({ base: { env: 'gridworld', episodes: 5 }, seeds: [1] }));
    const run = async (args: string[]) => {
      let err = '';
      const code = await main(['sweep', spec, '--out', path.join(dir, 'out'), ...args], { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false });
      return { code, err };
    };
    expect(await run(['--executor', 'pbs'])).toEqual({ code: 2, err: expect.stringMatching(/--executor must be one of local, slurm, got 'pbs'/) });
    expect(await run(['--time', '1:00:00'])).toEqual({ code: 2, err: expect.stringMatching(/--time is for --executor slurm/) });
    expect(await run(['--executor', 'slurm', '--time', 'an hour'])).toEqual({ code: 2, err: expect.stringMatching(/--time: must be a Slurm time limit/) });
    expect(await run(['--executor', 'slurm', '--cpus-per-task', '0'])).toEqual({ code: 2, err: expect.stringMatching(/--cpus-per-task: must be an integer in \[1, 1024\]/) });
    expect(await run(['--executor', 'slurm', '--parallel', '2'])).toEqual({ code: 2, err: expect.stringMatching(/--parallel is for the local executor/) });
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
  });
});
