import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { expandSweep, initSweepDir, sweepStatus, SweepError } from '../../lib/sweep/index';
import { main } from '../../lib/cli/main';

const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'sweep', 'local.js'));
const cli = path.join(root, 'bin', 'memq.js');

describe('sweep files', () => {
  it('expands agents × variants × grid × seeds into validated, uniquely named cells', () => {
    const plan = expandSweep({
      base: { env: 'gridworld', episodes: 20, demos: 0 },
      agents: ['memq', 'nec'],
      variants: [
        { name: 'full', config: {} },
        { name: 'novoid', config: { memq: { voidWeight: 0 } } },
      ],
      grid: { 'memq.alpha': [0.1, 0.5, 2], 'memq.m': [8, 16] },
      seeds: { from: 101, count: 3 },
    });
    expect(plan.cells.length).toBe(2 * 2 * 3 * 2 * 3);
    expect(new Set(plan.cells.map((c) => c.id)).size).toBe(plan.cells.length);
    // every combination appears once, with the grid values and the variant applied to the config
    const seen = new Set<string>();
    for (const c of plan.cells) {
      expect(c.config.agent).toBe(c.agent);
      expect(c.config.seed).toBe(c.seed);
      expect(c.config.env).toBe('gridworld');
      expect(c.config.memq.alpha).toBe(c.params['memq.alpha']);
      expect(c.config.memq.m).toBe(c.params['memq.m']);
      if (c.variant === 'novoid') expect(c.config.memq.voidWeight).toBe(0);
      else expect(c.config.memq.voidWeight).not.toBe(0);
      seen.add(`${c.agent}|${c.variant}|${c.config.memq.alpha}|${c.config.memq.m}|${c.seed}`);
      expect(c.group).not.toContain(String(c.seed) + '-');
    }
    expect(seen.size).toBe(plan.cells.length);
    // the seeds of one group are the rows a table averages over
    const groups = new Map<string, number[]>();
    for (const c of plan.cells) groups.set(c.group, [...(groups.get(c.group) ?? []), c.seed]);
    for (const seeds of groups.values()) expect(seeds).toEqual([101, 102, 103]);
  });

  it('refuses bad sweep files naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [null, /must be a JSON object, got null/],
      [{ seeds: [1], gird: {} }, /unknown field 'gird'/],
      [{ seeds: [] }, /'seeds' must not be empty/],
      [{ seeds: [1, 1] }, /lists a seed twice/],
      [{ seeds: 'x' }, /'seeds' must be a list of integers/],
      [{ seeds: [1], agents: ['memq', 'gpt'] }, /unknown agent "gpt"/],
      [{ seeds: [1], grid: { 'memq.alpah': [1] } }, /unknown field 'memq.alpah'/],
      [{ seeds: [1], grid: { 'memq.alpha': [] } }, /grid\['memq.alpha'\] must be a non-empty list/],
      [{ seeds: [1], grid: { 'memq.alpha': [-1] } }, /alpha/],
      [{ seeds: [1], variants: [{ name: 'a b', config: {} }] }, /variants\[0\]/],
      [{ seeds: [1], parallel: 0 }, /'parallel' must be an integer/],
      [{ seeds: { from: 1, count: 1000 }, grid: { 'memq.alpha': Array(200).fill(1) } }, /more than the limit/],
    ];
    for (const [spec, re] of bad) {
      expect(() => expandSweep(spec)).toThrow(SweepError);
      expect(() => expandSweep(spec)).toThrow(re);
    }
  });

  it('a directory holding another sweep is refused; the same sweep is reopened as it is', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-sweep-dir-'));
    const plan = expandSweep({ base: { env: 'gridworld', episodes: 5 }, seeds: [1, 2] });
    initSweepDir(dir, plan);
    expect(sweepStatus(dir).map((c) => c.state)).toEqual(['pending', 'pending']);
    initSweepDir(dir, plan); // same sweep: fine
    expect(() => initSweepDir(dir, expandSweep({ base: { env: 'gridworld', episodes: 5 }, seeds: [1, 3] }))).toThrow(/different sweep/);
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-sweep-full-'));
    fs.writeFileSync(path.join(other, 'x'), '');
    expect(() => initSweepDir(other, plan)).toThrow(/not empty/);
  });

  it('the CLI refuses bad input with exit code 2 and creates nothing', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-sweep-cli-'));
    const spec = path.join(dir, 's.json');
    fs.writeFileSync(spec, JSON.stringify({ seeds: [1], grid: { 'memq.nope': [1] } }));
    let err = '';
    const io = { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false };
    expect(await main(['sweep', spec, '--out', path.join(dir, 'out')], io)).toBe(2);
    expect(err).toMatch(/unknown field 'memq.nope'/);
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
    err = '';
    expect(await main(['sweep', path.join(dir, 'missing.json')], io)).toBe(2);
    expect(err).toMatch(/does not exist/);
    fs.writeFileSync(spec, JSON.stringify({ seeds: [1] }));
    err = '';
    expect(await main(['sweep', spec], io)).toBe(2);
    expect(err).toMatch(/--out DIR is required/);
  });
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function summaries(dir: string): Record<string, { evals: unknown; trainSuccess: number; episodes: number; status: string }> {
  const out: Record<string, any> = {};
  for (const id of fs.readdirSync(path.join(dir, 'cells'))) {
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'cells', id, 'summary.json'), 'utf8'));
    out[id] = { evals: s.evals, trainSuccess: s.trainSuccess, episodes: s.episodes, status: s.status };
  }
  return out;
}

describe.skipIf(!built)('memq sweep on the real CLI', () => {
  it('a sweep killed with SIGKILL in the middle resumes to the results of an uninterrupted sweep', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-sweep-'));
    const spec = path.join(tmp, 'sweep.json');
    fs.writeFileSync(
      spec,
      JSON.stringify({ base: { env: 'gridworld', episodes: 200, demos: 0, evalGames: 5, checkpointEvery: 10 }, grid: { 'memq.alpha': [0.2, 1] }, seeds: [1], parallel: 2 }),
    );
    // The reference: the same sweep, uninterrupted.
    const ref = path.join(tmp, 'ref');
    const io = { stdout: () => undefined, stderr: () => undefined, isTTY: false };
    expect(await main(['sweep', spec, '--out', ref, '--json'], io)).toBe(0);

    const out = path.join(tmp, 'out');
    const child = spawn(process.execPath, [cli, 'sweep', spec, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const metrics = (id: string) => path.join(out, 'cells', id, 'metrics.jsonl');
    await waitFor(() => fs.existsSync(metrics('memq-alpha=0.2-s1')) && fs.readFileSync(metrics('memq-alpha=0.2-s1'), 'utf8').split('\n').length > 30, 60_000);
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    // The orphaned cells notice the sweep is gone, checkpoint and stop.
    await waitFor(() => fs.readdirSync(path.join(out, 'cells')).every((id) => !fs.existsSync(path.join(out, 'cells', id, 'running.pid')) || !alive(Number(fs.readFileSync(path.join(out, 'cells', id, 'running.pid'), 'utf8')))), 60_000);
    const mid = sweepStatus(out);
    expect(mid.some((c) => c.state !== 'done'), stderr).toBe(true);
    let st = '';
    expect(await main(['sweep', 'status', out], { stdout: (t) => (st += t), stderr: () => undefined, isTTY: false })).toBe(0);
    expect(st).toMatch(/2 cells: /);

    expect(await main(['sweep', out, '--json'], io)).toBe(0);
    expect(sweepStatus(out).every((c) => c.state === 'done')).toBe(true);
    expect(summaries(out)).toEqual(summaries(ref));
    // compare reads the sweep directory
    let cmp = '';
    expect(await main(['compare', out, '--out', path.join(tmp, 'cmp')], { stdout: (t) => (cmp += t), stderr: () => undefined, isTTY: false })).toBe(0);
    expect(cmp).toMatch(/memq/);
  }, 240_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
