import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { defaultConfig, makeAgent, mergeConfig, validateConfig } from '../../lib/agent/config';
import { evalGameRngState, evalRecordFile, evaluate, evaluateGames, readMetrics, runTraining, type Progress } from '../../lib/agent/runner';
import { envNames } from '../../lib/envs/registry';

// Issue #11 item 9: an interrupt or a crash during an evaluation loses at most the game in
// progress; --resume continues the evaluation from its per-game record and ends with the same
// summary and metrics as an uninterrupted run.

const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'cli', 'main.js'));

function tmp(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `memq-${name}-`));
}

const strip = (ms: any[]) => ms.map(({ seconds, ...rest }) => rest);
const core = (s: any) => {
  const { wallSeconds: _w, episodesPerSecond: _e, ...rest } = s;
  return rest;
};
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8'));
const recordLines = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).length - 1 : 0);

const gridCfg = (patch: Record<string, unknown>) =>
  validateConfig(mergeConfig(defaultConfig(), { env: 'gridworld', envOptions: { maxSteps: 20 }, demos: 0, evalGames: 20, checkpointEvery: 5, ...patch }), envNames());

describe('evaluation: interrupt, crash and resume', () => {
  it('evaluation games are seeded per game: playing a subset reproduces the same games', async () => {
    const cfg = gridCfg({ agent: 'memq', episodes: 0, evalGames: 12 });
    // an untrained memq agent breaks every tie with its random stream: without per-game streams
    // game g's result would depend on the games played before it
    const agent = makeAgent(cfg);
    const before = agent.rngState!();
    const all = await evaluate(cfg, agent, 'train', 0);
    expect(agent.rngState!()).toBe(before); // the training stream is restored
    const dir = tmp('pergame');
    const file = path.join(dir, 'rec.jsonl');
    // pre-record games 0..5 of the same evaluation with poisoned results: they are taken as played
    const head = JSON.stringify({ kind: 'eval-games', episode: 0, split: 'train', games: 12 });
    fs.writeFileSync(file, [head, ...Array.from({ length: 6 }, (_, g) => JSON.stringify({ game: g, won: true, reward: 1000, steps: 1 }))].join('\n') + '\n');
    let played = 0;
    const r = await evaluateGames(cfg, makeAgent(cfg), 'train', 0, { onProgress: () => played++ }, undefined, file);
    expect(r.complete).toBe(true);
    expect(played).toBe(6);
    const recorded = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l));
    expect(recorded.map((g) => g.game)).toEqual([...Array(12).keys()]);
    // games 6..11, played after a skipped prefix, are the same as in the full evaluation
    const full = await (async () => {
      const f2 = path.join(dir, 'full.jsonl');
      await evaluateGames(cfg, makeAgent(cfg), 'train', 0, {}, undefined, f2);
      return fs.readFileSync(f2, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l));
    })();
    expect(recorded.slice(6)).toEqual(full.slice(6));
    expect(full.reduce((k, g) => k + g.reward, 0) / 12).toBeCloseTo(all.meanReward, 12);
    // distinct games get distinct streams, and the stream does not depend on the play order
    expect(new Set(Array.from({ length: 100 }, (_, g) => evalGameRngState(1, 'train', g))).size).toBe(100);
    expect(evalGameRngState(1, 'train', 5)).not.toBe(evalGameRngState(1, 'valid', 5));
  });

  it('an interrupt mid-evaluation stops after the current game and --resume matches an uninterrupted run', async () => {
    for (const agent of ['memq', 'nec'] as const) {
      const cfg = gridCfg({ agent, episodes: 12, evalEvery: 6, demos: 3 });
      const full = tmp(`evfull-${agent}`);
      const a = await runTraining(cfg, full);
      expect(a.status).toBe('complete');
      // interrupt during the intermediate evaluation (after 6 episodes), then during the final one
      for (const [at, game] of [[6, 7], [12, 13]] as const) {
        const cut = tmp(`evcut-${agent}-${at}`);
        const ctrl = new AbortController();
        const stop = (p: Progress) => {
          if (p.phase === 'eval' && p.episode === at && p.game === game) ctrl.abort();
        };
        const b1 = await runTraining(cfg, cut, { signal: ctrl.signal, onProgress: stop });
        expect(b1.status).toBe('interrupted');
        expect(b1.episodes).toBe(at);
        expect(b1.evals).toEqual({});
        // the game in progress finished and was recorded; no other game was started
        expect(recordLines(evalRecordFile(cut, at, 'train'))).toBe(game);
        // a crash after that: a torn line at the end of the record and of the metrics
        fs.appendFileSync(evalRecordFile(cut, at, 'train'), '{"game":');
        fs.appendFileSync(path.join(cut, 'metrics.jsonl'), '{"kind":"ev');
        const games: number[] = [];
        const b = await runTraining(cfg, cut, { onProgress: (p) => { if (p.phase === 'eval' && p.episode === at) games.push(p.game!); } }, true);
        // the recorded games are not played again
        expect(games[0]).toBe(game + 1);
        expect(core(b)).toEqual(core(a));
        expect(core(readJson(path.join(cut, 'summary.json')))).toEqual(core(readJson(path.join(full, 'summary.json'))));
        expect(strip(readMetrics(cut))).toEqual(strip(readMetrics(full)));
      }
    }
  });

  it('an interrupt during the demonstrations resumes from the next demonstration', async () => {
    const cfg = gridCfg({ agent: 'memq', episodes: 4, demos: 6, checkpointEvery: 2 });
    const full = tmp('demofull');
    const a = await runTraining(cfg, full);
    const cut = tmp('democut');
    const ctrl = new AbortController();
    const b1 = await runTraining(cfg, cut, { signal: ctrl.signal, onProgress: (p) => { if (p.phase === 'demos' && p.episode === 3) ctrl.abort(); } });
    expect(b1.status).toBe('interrupted');
    expect(readMetrics(cut).filter((m: any) => m.source === 'demo')).toHaveLength(3);
    const b = await runTraining(cfg, cut, {}, true);
    expect(core(b)).toEqual(core(a));
    expect(strip(readMetrics(cut))).toEqual(strip(readMetrics(full)));
  });
});

// The real CLI: SIGINT and SIGKILL in the middle of the final evaluation, then --resume.
describe.skipIf(!built)('memq run: SIGINT / SIGKILL during the final evaluation', () => {
  const args = (out: string) => ['run', '--env', 'gridworld', '--agent', 'memq', '--episodes', '15', '--demos', '2', '--eval-games', '150', '--out', out];
  const bin = path.join(root, 'bin', 'memq.js');

  async function cli(argv: string[]) {
    let out = '', err = '';
    const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false });
    return { code, out, err };
  }

  /** Starts the CLI, waits until `minGames` final-evaluation games are recorded, sends `signal`. */
  async function interrupt(out: string, signal: NodeJS.Signals, minGames: number) {
    const child = spawn(process.execPath, [bin, ...args(out)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    let done = false;
    exited.then(() => (done = true));
    const rec = evalRecordFile(path.join(out, 'memq-seed1'), 15, 'train');
    let seen = 0;
    while (!done) {
      await new Promise((r) => setTimeout(r, 20));
      seen = recordLines(rec);
      if (seen >= minGames) break;
    }
    expect(done, `the run ended before the evaluation could be interrupted: ${stderr}`).toBe(false);
    child.kill(signal);
    const code = await exited;
    return { code, stderr, seen, after: recordLines(rec) };
  }

  it('stops within one game, and --resume ends with the summary of an uninterrupted run', async () => {
    const ref = tmp('evref');
    const r0 = await cli([...args(ref), '--json']);
    expect(r0.code, r0.err).toBe(0);
    const refSummary = readJson(path.join(ref, 'memq-seed1', 'summary.json'));
    expect(refSummary.status).toBe('complete');
    expect(refSummary.evals.train.games).toBe(150);

    // SIGINT: the current game finishes, the run saves and exits 130
    const a = tmp('evint');
    const i = await interrupt(a, 'SIGINT', 10);
    expect(i.code, i.stderr).toBe(130);
    expect(i.stderr).toMatch(/interrupt received/);
    expect(i.after).toBeGreaterThanOrEqual(i.seen);
    expect(i.after).toBeLessThanOrEqual(i.seen + 2); // at most a game that ended as we read, and the one in progress
    expect(i.after).toBeLessThan(150);
    const s1 = readJson(path.join(a, 'memq-seed1', 'summary.json'));
    expect(s1.status).toBe('interrupted');
    expect(s1.episodes).toBe(15);
    const ra = await cli(['run', '--resume', a, '--json']);
    expect(ra.code, ra.err).toBe(0);
    expect(core(readJson(path.join(a, 'memq-seed1', 'summary.json')))).toEqual(core(refSummary));
    expect(strip(readMetrics(path.join(a, 'memq-seed1')))).toEqual(strip(readMetrics(path.join(ref, 'memq-seed1'))));

    // SIGKILL: no chance to save; the checkpoint taken before the evaluation and the games recorded so far remain
    const b = tmp('evkill');
    const k = await interrupt(b, 'SIGKILL', 10);
    expect(k.code).toBe(null);
    expect(k.after).toBeLessThan(150);
    expect(fs.existsSync(path.join(b, 'memq-seed1', 'summary.json'))).toBe(false);
    const rb = await cli(['run', '--resume', b, '--json']);
    expect(rb.code, rb.err).toBe(0);
    expect(core(readJson(path.join(b, 'memq-seed1', 'summary.json')))).toEqual(core(refSummary));
    expect(strip(readMetrics(path.join(b, 'memq-seed1')))).toEqual(strip(readMetrics(path.join(ref, 'memq-seed1'))));
  }, 300_000);
});
