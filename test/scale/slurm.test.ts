/**
 * The Slurm executor on a real (one-node, localhost) Slurm cluster started by the test: a small
 * gridworld sweep submitted as an array job, waited for, gives the same results per cell as the
 * local executor. Skips, saying why, where Slurm cannot start here.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { sweepStatus } from '../../lib/sweep/index';
import { runSweepSlurm, slurmCommands } from '../../lib/sweep/slurm';
import { startSlurm, type SlurmCluster } from './daemons';

const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'cli', 'main.js'));
const cli = path.join(root, 'bin', 'memq.js');

function results(dir: string): Record<string, { evals: unknown; trainSuccess: number; episodes: number; status: string }> {
  const out: Record<string, any> = {};
  for (const id of fs.readdirSync(path.join(dir, 'cells')).sort()) {
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'cells', id, 'summary.json'), 'utf8'));
    out[id] = { evals: s.evals, trainSuccess: s.trainSuccess, episodes: s.episodes, status: s.status };
  }
  return out;
}

describe.skipIf(!built)('memq sweep --executor slurm on a local one-node cluster', () => {
  let cluster: SlurmCluster | undefined;
  let reason = '';
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-slurm-'));

  beforeAll(async () => {
    const r = await startSlurm(path.join(tmp, 'cluster'));
    cluster = r.cluster;
    reason = r.reason ?? '';
    if (!cluster) process.stderr.write(`\n[slurm.test] SKIPPED: Slurm cannot start here: ${reason}\n\n`);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  it('a 2 × 2-seed gridworld sweep on Slurm, stopped mid-run and re-submitted, equals the local executor cell by cell', async (ctx) => {
    if (!cluster) return ctx.skip();
    const spec = path.join(tmp, 'sweep.json');
    fs.writeFileSync(
      spec,
      JSON.stringify({
        name: 'slurm-test',
        base: { env: 'gridworld', episodes: 60, demos: 0, evalGames: 4, checkpointEvery: 10 },
        grid: { 'memq.alpha': [0.2, 1] },
        seeds: [1, 2],
        parallel: 2,
        slurm: { cpusPerTask: 1, time: '00:10:00' },
      }),
    );
    const quiet = { stdout: () => undefined, stderr: () => undefined, isTTY: false };
    const local = path.join(tmp, 'local');
    expect(await main(['sweep', spec, '--out', local, '--json'], quiet)).toBe(0);

    // The CLI as a user runs it; sbatch/squeue find the test cluster through SLURM_CONF.
    const saved = process.env.SLURM_CONF;
    process.env.SLURM_CONF = cluster.env.SLURM_CONF;
    const out = path.join(tmp, 'slurm');
    let stdout = '';
    let stderr = '';
    let code: number;
    const cliIo = { stdout: (t: string) => (stdout += t), stderr: (t: string) => (stderr += t), isTTY: false };
    try {
      // 1. Submit without waiting; once a cell has checkpointed, stop the job the graceful way
      //    (pending tasks cancelled, running ones sent SIGUSR1 as before a time limit).
      expect(await main(['sweep', spec, '--out', out, '--executor', 'slurm', '--partition', cluster.partition, '--json'], cliIo)).toBe(0);
      const first = JSON.parse(stdout);
      expect(first.waited).toBe(false);
      const job = String(first.job);
      const ids = fs.readdirSync(path.join(out, 'cells'));
      const t0 = Date.now();
      while (!ids.some((id) => fs.existsSync(path.join(out, 'cells', id, 'checkpoint', 'state.json')))) {
        if (Date.now() - t0 > 90_000) throw new Error(`no cell checkpointed within 90 s\n${stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      spawnSync('scancel', ['--state=PENDING', job], { env: cluster.env });
      spawnSync('scancel', ['--batch', '--signal=USR1', job], { env: cluster.env });
      const commands = slurmCommands(cluster.env);
      while ((await commands.run('squeue', ['-h', '-j', job])).stdout.trim()) await new Promise((r) => setTimeout(r, 300));
      const mid = sweepStatus(out);
      expect(mid.some((c) => c.state !== 'done'), JSON.stringify(mid)).toBe(true);
      expect(mid.some((c) => c.state === 'failed')).toBe(false); // interrupted cells are partial, not failed
      expect(mid.some((c) => c.state === 'partial' && c.episodesDone > 0 && c.episodesDone < 60), JSON.stringify(mid)).toBe(true);
      // 2. Re-submit: only the unfinished cells, partial ones resuming from their checkpoint; wait.
      stdout = '';
      code = await main(['sweep', out, '--executor', 'slurm', '--partition', cluster.partition, '--wait', '--json'], cliIo);
      const second = JSON.parse(stdout);
      expect(second.submitted).toEqual(mid.filter((c) => c.state !== 'done').map((c) => c.id));
      stdout = JSON.stringify({ ...second, first });
    } finally {
      if (saved === undefined) delete process.env.SLURM_CONF;
      else process.env.SLURM_CONF = saved;
    }
    const logs = () =>
      fs.readdirSync(path.join(out, 'slurm', 'logs')).map((f) => `${f}: ${fs.readFileSync(path.join(out, 'slurm', 'logs', f), 'utf8')}`).join('\n');
    expect(code, `${stderr}\n${logs()}`).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.waited).toBe(true);
    expect(report.done).toBe(4);
    expect(fs.readFileSync(path.join(out, 'slurm', 'array.sbatch'), 'utf8')).toMatch(/^#SBATCH --partition=memqtest$/m);
    // Every cell ran on the cluster (Slurm's own per-task logs name the cell and its exit code).
    for (const id of fs.readdirSync(path.join(out, 'cells'))) expect(logs()).toMatch(new RegExp(`cell ${id.replace(/[.+]/g, '\\$&')} exited with code 0`));
    expect(logs()).toMatch(/exited with code 130/); // the interrupted one(s)
    expect(sweepStatus(out).map((c) => c.state)).toEqual(['done', 'done', 'done', 'done']);
    expect(results(out)).toEqual(results(local));

    // Re-submit: every cell is done, nothing goes to the queue.
    const r = await runSweepSlurm(out, { settings: {}, cliPath: cli, commands: slurmCommands(cluster.env) });
    expect(r.job).toBeUndefined();
    expect(r.submitted).toEqual([]);
    // compare reads the directory the Slurm executor wrote.
    let cmp = '';
    expect(await main(['compare', out, '--out', path.join(tmp, 'cmp')], { stdout: (t) => (cmp += t), stderr: () => undefined, isTTY: false })).toBe(0);
    expect(cmp).toMatch(/memq/);
  }, 170_000);
});
