import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { benchCommand } from '../../bench/cli';

// Issue #11 item 10: bad arguments get a clear message naming the argument and the expected
// form, exit code 2, no raw Node error (EEXIST, ENOENT, a stack), and nothing created on disk.

const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'cli', 'main.js'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-cli-'));
const at = (...p: string[]) => path.join(work, ...p);

async function cli(argv: string[]) {
  let out = '', err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false }, [benchCommand]); // as bin/memq.js runs it
  return { code, out, err };
}

/** Every path under dir (what a failed command must leave unchanged). */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      out.push(path.relative(dir, p));
      if (fs.statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

const RAW = /EEXIST|ENOENT|ENOTDIR|EISDIR|Invalid typed array length|singular matrix|\n\s+at /;

/** Runs argv, expects exit 2 and a message matching `msg`, and no change on disk under work/. */
async function refused(argv: string[], msg: RegExp) {
  const before = tree(work);
  const r = await cli(argv);
  expect(r.code, `${argv.join(' ')}\n${r.err}`).toBe(2);
  expect(r.err, argv.join(' ')).toMatch(msg);
  expect(r.err, argv.join(' ')).not.toMatch(RAW);
  expect(tree(work), `${argv.join(' ')} changed the disk`).toEqual(before);
  return r;
}

function write(rel: string, text: string): string {
  const f = at(rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, text);
  return f;
}

/** A chain MDP file (states × actions), rewards r. */
function mdpFile(rel: string, states: number, actions: number, r: number): string {
  const P = [], R = [];
  for (let s = 0; s < states; s++) {
    P.push(Array.from({ length: actions }, (_, a) => Array.from({ length: states }, (_, t) => (t === (s + a) % states ? 1 : 0))));
    R.push(Array.from({ length: actions }, () => r));
  }
  return write(rel, JSON.stringify({ states, actions, P, R }));
}

describe('memq run: inputs are checked before anything is written', () => {
  const file = write('a-file', 'x');
  write('null.json', 'null');
  write('prior-null.json', JSON.stringify({ prior: null }));
  write('splits.json', JSON.stringify({ env: 'gridworld', evalSplits: ['nope'] }));
  write('envopts.json', JSON.stringify({ env: 'gridworld', envOptions: { maxSteps: -3 } }));
  fs.mkdirSync(at('empty-model'), { recursive: true });
  write('broken-model/config.json', '{}');
  write('broken-model/tokenizer.json', '{}');
  const small = ['--env', 'gridworld', '--episodes', '1', '--demos', '0', '--eval-games', '1'];

  it('--out naming an existing file, or a path under a file', async () => {
    await refused(['run', ...small, '--out', file], /--out .*a-file exists and is not a directory/);
    await refused(['run', ...small, '--out', path.join(file, 'sub')], /--out .*cannot create .*a-file is a file, not a directory/);
  });

  it('--prior model:DIR that does not exist, is empty, or does not load', async () => {
    await refused(['run', ...small, '--prior', `model:${at('nonexistent')}`, '--out', at('r1')], /--prior model:.*nonexistent does not exist \(expected a model directory/);
    await refused(['run', ...small, '--prior', `model:${at('empty-model')}`, '--out', at('r2')], /--prior model:.*has no config\.json/);
    await refused(['run', ...small, '--prior', `model:${at('broken-model')}`, '--out', at('r3')], /--prior model:.*cannot load the model prior in .*broken-model/);
    await refused(['run', ...small, '--prior', 'gpt', '--out', at('r4')], /--prior must be 'uniform', 'pretrained', 'model:DIR' or 'gguf:FILE'/);
  });

  it('--config holding null, a null prior, a directory; splits and env options the env refuses', async () => {
    await refused(['run', '--config', at('null.json'), '--out', at('r5')], /--config .*null\.json must be a JSON object, got null/);
    await refused(['run', '--config', at('prior-null.json'), '--out', at('r6')], /'prior' must be an object like \{"kind": "uniform"\}.*got null/);
    await refused(['run', '--config', work, '--out', at('r7')], /--config .*cannot read it \(it is a directory\)/);
    await refused(['run', '--config', at('splits.json'), '--out', at('r8')], /evalSplits: gridworld has no split 'nope' \(known: train\)/);
    await refused(['run', '--config', at('envopts.json'), '--out', at('r9')], /envOptions \{"maxSteps":-3\}.*maxSteps must be a positive integer/);
  });

  it('--resume of something that is not a run, or a corrupt manifest', async () => {
    write('corrupt/run.json', '{"runs": [');
    write('badmanifest/run.json', JSON.stringify({ version: 1, runs: [{ agent: 'memq', seed: 1, dir: '../../etc' }] }));
    await refused(['run', '--resume', file], /--resume .*a-file is not a directory/);
    await refused(['run', '--resume', at('nothing-here')], /--resume .*nothing-here: not a memq run directory \(.*nothing-here does not exist\)/);
    await refused(['run', '--resume', at('corrupt')], /--resume .*run\.json is not valid JSON/);
    await refused(['run', '--resume', at('badmanifest')], /run\.json is not a memq run manifest/);
    await refused(['run', '--resume', at('corrupt'), '--seeds', '3'], /--resume continues a run with its saved config; drop --seeds/);
  });

  it('--help shows every default', async () => {
    const r = await cli(['run', '--help']);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n').filter((l) => /^\s+--/.test(l));
    expect(lines.length).toBeGreaterThan(15);
    for (const l of lines) {
      if (/^\s+--(json|help|resume)\b/.test(l)) continue;
      expect(l).toMatch(/\(default [^)]/);
    }
    expect(r.out).toMatch(/--env .*\(default household\)/);
    expect(r.out).toMatch(/--episodes .*\(default 150\)/);
    expect(r.out).toMatch(/--demos .*\(default 30\)/);
    expect(r.out).toMatch(/--seed .*\(default 1\)/);
    expect(r.out).toMatch(/--out .*\(default runs\/<date-time>\)/);
  });
});

describe('memq model: failed init / pretrain leave nothing behind', () => {
  it('model init', async () => {
    await refused(['model', 'init', '--out', at('m1'), '--hidden', '65', '--heads', '4'], /--hidden \(65\) must be a multiple of --heads \(4\)/);
    await refused(['model', 'init', '--out', at('m1'), '--vocab', '100000000'], /--vocab must be an integer in \[1, 16777216\]/);
    await refused(['model', 'init', '--out', at('m1'), '--layers', '60000', '--hidden', '16384', '--heads', '16', '--kv-heads', '16', '--intermediate', '65536'], /memq model init: .*(allocate|over the limit)/);
    await refused(['model', 'init', '--out', at('m1'), '--init-std', '0'], /--init-std must be in \(0, 10\]/);
    await refused(['model', 'init', '--out', at('a-file')], /--out .*a-file exists and is not a directory/);
    await refused(['model', 'init', '--out', at('m1'), '--tokenizer', at('nonexistent')], /--tokenizer .*no tokenizer\.json (found|in)/);
    const ok = await cli(['model', 'init', '--out', at('m-ok')]);
    expect(ok.code, ok.err).toBe(0);
    await refused(['model', 'init', '--out', at('m-ok')], /--out .*m-ok already holds a model/);
  });

  it('model pretrain', async () => {
    fs.mkdirSync(at('m-ok'), { recursive: true });
    fs.writeFileSync(at('m-ok', 'notes.txt'), 'not empty');
    await refused(['model', 'pretrain', '--out', at('p1'), '--hidden', '65'], /--hidden \(65\) must be a multiple of --heads \(4\)/);
    await refused(['model', 'pretrain', '--out', at('p1'), '--eval-games', '-1'], /--eval-games must be an integer in \[0, 1000000\], got -1/);
    await refused(['model', 'pretrain', '--out', at('p1'), '--env', 'chess'], /--env must be one of/);
    await refused(['model', 'pretrain', '--out', at('a-file')], /--out .*exists and is not a directory/);
    await refused(['model', 'pretrain', '--out', at('m-ok')], /--out .*m-ok is not empty/);
  });
});

describe('memq solve: the MDP file is validated with stated limits; overflow is reported as such', () => {
  it('a missing file or a directory', async () => {
    await refused(['solve', '--mdp', at('nope.json')], /cannot read .*nope\.json \(no such file\)/);
    await refused(['solve', '--mdp', work], /cannot read .* \(it is a directory\)/);
  });

  it('sizes over the limits', async () => {
    const huge = write('huge.json', JSON.stringify({ states: 1e9, actions: 2, P: [], R: [] }));
    await refused(['solve', '--mdp', huge], /huge\.json: states must be a positive integer at most 8192, got 1000000000/);
    const wide = write('wide.json', JSON.stringify({ states: 8192, actions: 4, P: [], R: [] }));
    await refused(['solve', '--mdp', wide], /states² · actions = 268435456 transition probabilities exceeds the limit of 67108864/);
    const acts = write('acts.json', JSON.stringify({ states: 2, actions: 5000, P: [], R: [] }));
    await refused(['solve', '--mdp', acts], /actions must be a positive integer at most 4096, got 5000/);
  });

  it('rewards whose values overflow float64: every method says overflow, not singular matrix', async () => {
    const big = mdpFile('big.json', 3, 2, 1e308);
    for (const method of ['spi', 'svi', 'vi']) {
      const r = await refused(['solve', '--mdp', big, '--method', method], /big\.json: overflow: rewards up to \|R\| = 1\.000e\+308 with gamma 0\.95/);
      expect(r.out).toBe('');
    }
    // just inside the limit it solves, with finite values
    const ok = await cli(['solve', '--mdp', mdpFile('fine.json', 3, 2, 1e298), '--json']);
    expect(ok.code, ok.err).toBe(0);
    expect(JSON.parse(ok.out).V.every((v: number) => Number.isFinite(v) && v > 1e298)).toBe(true);
  });
});

describe('eval, compare, bench, env-check: bad paths and numbers', () => {
  it('memq eval accepts a run root and evaluates each of its runs', async () => {
    const runRoot = at('runs', 'exp');
    const r = await cli(['run', '--env', 'gridworld', '--agent', 'memq', '--agent', 'random', '--episodes', '2', '--demos', '0', '--eval-games', '2', '--out', runRoot, '--json']);
    expect(r.code, r.err).toBe(0);
    const ev = await cli(['eval', '--run', runRoot, '--games', '3', '--json']);
    expect(ev.code, ev.err).toBe(0);
    const rows = JSON.parse(ev.out);
    expect(rows.map((x: any) => [x.agent, x.seed, x.split, x.games])).toEqual([['memq', 1, 'train', 3], ['random', 1, 'train', 3]]);
    expect(rows.map((x: any) => path.basename(x.run))).toEqual(['memq-seed1', 'random-seed1']);
    // an interrupt before the first game: nothing is evaluated, exit 130
    const ctrl = new AbortController();
    ctrl.abort();
    let stopped = '';
    const code = await main(['eval', '--run', runRoot, '--json'], { stdout: (t) => (stopped += t), stderr: () => undefined, isTTY: false, signal: ctrl.signal });
    expect(code).toBe(130);
    expect(JSON.parse(stopped)).toEqual([]);
    const text = await cli(['eval', '--run', runRoot, '--games', '2']);
    expect(text.out).toMatch(/memq seed 1 train: success/);
    expect(text.out).toMatch(/random seed 1 train: success/);
    // the folder above run roots: say which to pick
    await refused(['eval', '--run', at('runs')], /--run .*runs: not a memq run directory .*it holds exp: pass one of them/);
    await refused(['eval', '--run', at('nonexistent')], /--run .*nonexistent: no such directory/);
    await refused(['eval', '--run', runRoot, '--split', 'valid'], /--split valid: gridworld has splits train/);
    await refused(['eval', '--run', runRoot, '--games', '0'], /--games must be an integer in \[1, 1000000\], got 0/);
    // compare: plot under a file, a corrupt summary
    await refused(['compare', runRoot, '--out', path.join(at('a-file'), 'cmp')], /--out .*a-file is a file, not a directory/);
    fs.writeFileSync(path.join(runRoot, 'random-seed1', 'summary.json'), '{"agent": ');
    await refused(['compare', runRoot, '--out', at('cmp')], /summary\.json is not valid JSON/);
    // a damaged checkpoint: --resume and eval say so (exit 2), without a raw error
    const state = path.join(runRoot, 'memq-seed1', 'checkpoint', 'state.json');
    fs.writeFileSync(state, fs.readFileSync(state, 'utf8').slice(0, 20));
    fs.rmSync(path.join(runRoot, 'memq-seed1', 'summary.json'));
    await refused(['run', '--resume', runRoot, '--json'], /--resume .*memq-seed1: .*checkpoint cannot be loaded .*start a new run/);
    await refused(['eval', '--run', path.join(runRoot, 'memq-seed1')], /--run .*memq-seed1: .*state\.json: cannot read it as JSON/);
    fs.rmSync(path.join(runRoot, 'random-seed1', 'checkpoint', 'agent', 'agent.json'));
    await refused(['eval', '--run', path.join(runRoot, 'random-seed1')], /--run .*random-seed1: .*cannot load the saved agent \(.*agent\.json: no such file or directory\)/);
  }, 120_000);

  it('bench and env-check', async () => {
    await refused(['bench', 'envs', '--out', work], /--out .* is a directory, expected a file path/);
    await refused(['bench', 'retrieval', '--out', path.join(at('a-file'), 'x.json')], /a-file is a file, not a directory/);
    await refused(['bench', 'retrieval', '--n', '1e9'], /--n expects integers in \[1, 100000000\]/);
    await refused(['bench', 'retrieval', '--peers', 'annoy'], /--peers expects a comma-separated subset of usearch,hnswlib,js,faiss, got 'annoy'/);
    await refused(['bench', 'retrieval', '--m', '0'], /--m must be an integer in \[1, 4096\]/);
    await refused(['bench', 'llm', '--peers', 'js'], /--peers applies to the retrieval benchmark only/);
    await refused(['env-check', 'process', '--command', at('no-such-program')], /--command .*no-such-program: no such program/);
  });
});

// The real CLI (bin/memq.js): the same messages, exit code 2, no stack, nothing created.
describe.skipIf(!built)('bin/memq.js', () => {
  const bin = path.join(root, 'bin', 'memq.js');
  it('reports argument errors without a raw error and creates nothing', () => {
    const cases: [string[], RegExp][] = [
      [['run', '--env', 'gridworld', '--out', at('a-file')], /--out .*a-file exists and is not a directory/],
      [['run', '--env', 'gridworld', '--prior', 'model:/nonexistent-memq-model', '--out', at('spawned')], /--prior model:\/nonexistent-memq-model: \/nonexistent-memq-model does not exist/],
      [['run', '--config', at('null.json'), '--out', at('spawned')], /must be a JSON object, got null/],
      [['model', 'init', '--out', at('spawned'), '--hidden', '65'], /--hidden \(65\) must be a multiple of --heads/],
      [['solve', '--mdp', at('huge.json')], /states must be a positive integer at most 8192/],
      [['solve', '--mdp', at('big.json')], /overflow/],
    ];
    for (const [argv, msg] of cases) {
      const before = tree(work);
      const r = spawnSync(process.execPath, [bin, ...argv], { encoding: 'utf8' });
      expect(r.status, `${argv.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(RAW);
      expect(tree(work)).toEqual(before);
    }
  });
});
