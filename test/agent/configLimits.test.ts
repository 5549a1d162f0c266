// A run config whose kernel parameter the index would refuse is bad input, refused before anything
// runs: ConfigError naming the field (CLI exit code 2), not an index error in the middle of a run
// (exit code 1). Found by the fuzz suite (seed 123: memq.delta 1e-40 ended `memq run` with 1).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { ConfigError, defaultConfig, mergeConfig, validateConfig } from '../../lib/agent/config';
import { envNames } from '../../lib/envs/registry';
import { LIMITS, MemoryIndex } from '../../lib/retrieval';

const check = (memq: Record<string, unknown>) => validateConfig(mergeConfig(defaultConfig(), { memq } as never), envNames());

describe('run config: kernel parameters at the index limits', () => {
  it('refuses what the index refuses, naming the field, and accepts the limits themselves', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ kernel: 'inverse', delta: 1e-40 }, /memq\.delta must be a number in \[1e-30/],
      [{ kernel: 'cosine', kappa: 88.5 }, /memq\.kappa must be a number in \(0, 88\]/],
      [{ kernel: 'gaussian', bandwidth: 1e-50 }, /memq\.bandwidth must stay > 0 in float32/],
    ];
    for (const [memq, re] of bad) {
      expect(() => check(memq)).toThrow(ConfigError);
      expect(() => check(memq)).toThrow(re);
      // the index refuses the same value (the config check is not stricter than the index)
      const { kernel, ...rest } = memq;
      expect(() => new MemoryIndex({ dim: 2, kernel, ...rest } as never)).toThrow(RangeError);
    }
    for (const memq of [{ kernel: 'inverse', delta: LIMITS.minDelta }, { kernel: 'cosine', kappa: LIMITS.maxKappa }, { kernel: 'gaussian', bandwidth: 1e-40 }]) {
      expect(() => check(memq)).not.toThrow();
      const { kernel, ...rest } = memq as Record<string, unknown>;
      expect(() => new MemoryIndex({ dim: 2, kernel, ...rest } as never)).not.toThrow();
    }
  });

  it('memq run exits 2 with the message for such a config', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-cfglim-'));
    try {
      const cfg = path.join(dir, 'config.json');
      fs.writeFileSync(cfg, JSON.stringify({ memq: { kernel: 'inverse', delta: 1e-40 } }));
      let err = '';
      const code = await main(['run', '--config', cfg, '--out', path.join(dir, 'out')], { stdout: () => undefined, stderr: (t) => (err += t), isTTY: false });
      expect(code).toBe(2);
      expect(err).toMatch(/memq\.delta/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
