import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { defaultConfig, makeAgent, mergeConfig, validateConfig } from '../../lib/agent/config';
import { evaluate, readMetrics, runTraining } from '../../lib/agent/runner';
import { envNames } from '../../lib/envs/registry';

function tmp(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `memq-${name}-`));
}

async function cli(argv: string[]) {
  let out = '', err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false });
  return { code, out, err };
}

const gridCfg = (patch: Record<string, unknown>) =>
  validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld', envOptions: { maxSteps: 20 }, demos: 0, evalGames: 20, checkpointEvery: 5, ...patch }), envNames());

describe('memq run (agent loop)', () => {
  it('a short end-to-end run writes every output file with valid contents', async () => {
    const dir = tmp('e2e');
    const r = await cli(['run', '--env', 'gridworld', '--agent', 'memq', '--episodes', '12', '--eval-every', '6', '--eval-games', '5', '--demos', '2', '--out', dir]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/agent\s+seed\s+train/);
    const run = path.join(dir, 'memq-seed1');
    const config = JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8'));
    expect(config.agent).toBe('memq');
    expect(config.episodes).toBe(12);
    const metrics = readMetrics(run);
    const eps = metrics.filter((m) => m.kind === 'episode');
    expect(eps.filter((m: any) => m.source === 'demo')).toHaveLength(2);
    expect(eps.filter((m: any) => m.source === 'train').map((m) => m.episode)).toEqual([...Array(12).keys()]);
    const evals = metrics.filter((m) => m.kind === 'eval');
    expect(evals.map((e: any) => e.episode)).toEqual([6, 12]);
    for (const e of evals as any[]) {
      expect(e.games).toBe(5);
      expect(e.success).toBeGreaterThanOrEqual(0);
      expect(e.success).toBeLessThanOrEqual(1);
    }
    const summary = JSON.parse(fs.readFileSync(path.join(run, 'summary.json'), 'utf8'));
    expect(summary.status).toBe('complete');
    expect(summary.episodes).toBe(12);
    expect(summary.memory).toBeGreaterThan(0);
    expect(Object.keys(summary.evals)).toEqual(['train']);
    const svg = fs.readFileSync(path.join(run, 'learning-curve.svg'), 'utf8');
    expect(svg).toMatch(/^<\?xml|^<svg/);
    expect(svg).toContain('</svg>');
    const png = fs.readFileSync(path.join(run, 'learning-curve.png'));
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(fs.existsSync(path.join(run, 'checkpoint', 'agent', 'memory', 'CURRENT'))).toBe(true);
    // eval and compare read the run back
    const ev = await cli(['eval', '--run', run, '--games', '3', '--json']);
    expect(ev.code, ev.err).toBe(0);
    expect(JSON.parse(ev.out)[0].games).toBe(3);
    const cmp = await cli(['compare', dir, '--out', path.join(dir, 'cmp')]);
    expect(cmp.code, cmp.err).toBe(0);
    expect(cmp.out).toMatch(/memq\s+1/);
    expect(fs.existsSync(path.join(dir, 'cmp.png'))).toBe(true);
  });

  it('on gridworld, success after training exceeds success before', async () => {
    for (const [agent, episodes] of [['memq', 80], ['qlearn', 400]] as const) {
      const cfg = gridCfg({ agent, episodes });
      const before = await evaluate(cfg, makeAgent(cfg), 'train', 0);
      const summary = await runTraining(cfg, tmp(`grid-${agent}`));
      const after = summary.evals.train.success;
      expect(after, `${agent}: before ${before.success}, after ${after}`).toBeGreaterThan(before.success + 0.3);
    }
  });

  it('an interrupted run resumes to the same result as an uninterrupted one', async () => {
    const strip = (ms: any[]) => ms.map(({ seconds, ...rest }) => rest);
    for (const agent of ['memq', 'nec'] as const) {
      const cfg = gridCfg({ agent, episodes: 24, evalEvery: 8, demos: 3 });
      const full = tmp(`full-${agent}`);
      const a = await runTraining(cfg, full);
      const cut = tmp(`cut-${agent}`);
      const ctrl = new AbortController();
      const b1 = await runTraining(cfg, cut, { signal: ctrl.signal, onProgress: (p) => { if (p.phase === 'train' && p.episode === 11) ctrl.abort(); } });
      expect(b1.status).toBe('interrupted');
      expect(b1.episodes).toBe(11);
      // a crash after the interrupt's checkpoint: stray later lines are dropped on resume
      fs.appendFileSync(path.join(cut, 'metrics.jsonl'), '{"kind":"episode","episode":99,"source":"train"}\n{"kind":"epi');
      const b = await runTraining(cfg, cut, {}, true);
      const { wallSeconds: _w1, episodesPerSecond: _e1, ...sa } = a;
      const { wallSeconds: _w2, episodesPerSecond: _e2, ...sb } = b;
      expect(sb).toEqual(sa);
      expect(strip(readMetrics(cut))).toEqual(strip(readMetrics(full)));
    }
  });

  it('bad flags and bad config files get clear errors (exit code 2)', async () => {
    const dir = tmp('bad');
    const badJson = path.join(dir, 'bad.json');
    fs.writeFileSync(badJson, '{ "episodes": 3,');
    const unknownField = path.join(dir, 'unknown.json');
    fs.writeFileSync(unknownField, JSON.stringify({ memq: { alpah: 0.1 } }));
    const wrongType = path.join(dir, 'type.json');
    fs.writeFileSync(wrongType, JSON.stringify({ episodes: 'many' }));
    const cases: [string[], RegExp][] = [
      [['run', '--bogus'], /unknown flag --bogus/],
      [['run', '--episodes', 'ten'], /--episodes expects a finite number/],
      [['run', '--episodes', '-3', '--out', path.join(dir, 'a')], /episodes must be an integer in \[0/],
      [['run', '--agent', 'alphago', '--out', path.join(dir, 'b')], /agent must be one of memq, prior, nec, memrl, random, qlearn/],
      [['run', '--env', 'chess', '--out', path.join(dir, 'c')], /env must be one of/],
      [['run', '--config', path.join(dir, 'missing.json')], /cannot read it/],
      [['run', '--config', badJson], /not valid JSON/],
      [['run', '--config', unknownField], /unknown field 'memq.alpah'/],
      [['run', '--config', wrongType, '--out', path.join(dir, 'd')], /episodes must be an integer/],
      [['run', '--resume', path.join(dir, 'nothing')], /not a memq run directory/],
      [['eval'], /--run DIR is required/],
      [['compare', dir], /not a memq run directory/],
    ];
    for (const [argv, msg] of cases) {
      const r = await cli(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toMatch(msg);
    }
  });
});
