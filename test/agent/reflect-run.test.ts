import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { defaultConfig, mergeConfig, validateConfig, ConfigError } from '../../lib/agent/config';
import { envNames } from '../../lib/envs/registry';

async function run(args: string[]) {
  let out = '';
  let err = '';
  const code = await main(args, { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false });
  return { code, out, err };
}

describe('memq run --agent reflect', () => {
  for (const [env, extra] of [
    ['household', ['--episodes', '6', '--demos', '3', '--eval-games', '4']],
    ['kitchen', ['--episodes', '6', '--demos', '3', '--eval-games', '4']],
    ['gridworld', ['--episodes', '30', '--demos', '2', '--eval-games', '5']],
  ] as const) {
    it(`runs on ${env} (train, checkpoint, evaluate) and resumes`, async () => {
      const out = fs.mkdtempSync(path.join(os.tmpdir(), `memq-reflect-${env}-`));
      const r = await run(['run', '--agent', 'reflect', '--env', env, ...extra, '--out', out, '--json']);
      expect(r.code, r.err).toBe(0);
      const s = JSON.parse(r.out);
      expect(s.agent).toBe('reflect');
      expect(s.status).toBe('complete');
      expect(s.memory).toBeGreaterThan(0);
      const lines = fs.readFileSync(path.join(out, 'reflect-seed1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const eps = lines.filter((m) => m.kind === 'episode' && m.source === 'train');
      expect(eps.length).toBe(Number(extra[1]));
      expect(eps.every((m) => typeof m.memoryShare === 'number' && m.memoryShare >= 0 && m.memoryShare <= 1)).toBe(true);
      const ev = lines.filter((m) => m.kind === 'eval');
      expect(ev.length).toBeGreaterThan(0);
      for (const e of ev) expect(e.agentStats.coverageRadius).toBeGreaterThanOrEqual(0);
      // the checkpoint holds both memories and reloads
      expect(fs.existsSync(path.join(out, 'reflect-seed1', 'checkpoint', 'agent', 'cases'))).toBe(true);
      const again = await run(['run', '--resume', out, '--json']);
      expect(again.code, again.err).toBe(0);
    }, 180_000);
  }

  it('refuses bad reflect settings naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [{ reflect: { gate: 'maybe' } }, /reflect.gate must be 'fixed' or 'learned'/],
      [{ reflect: { conditioning: 'prompt' } }, /needs prior.kind 'model'/],
      [{ reflect: { voidWeight: 0 } }, /reflect.voidWeight must be a number in \(0/],
      [{ encoder: { kind: 'model' } }, /encoder.kind 'model' .* needs prior.kind 'model'/],
      [{ encoder: { abstractIds: 'yes' } }, /encoder.abstractIds must be true or false/],
    ];
    for (const [patch, re] of bad) {
      expect(() => validateConfig(mergeConfig(defaultConfig(), { agent: 'reflect', ...(patch as object) }), envNames())).toThrow(ConfigError);
      expect(() => validateConfig(mergeConfig(defaultConfig(), { agent: 'reflect', ...(patch as object) }), envNames())).toThrow(re);
    }
  });
});
