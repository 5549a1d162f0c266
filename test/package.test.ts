import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'index.js'));

// The package as consumers see it: `require('memq')` and `import ... from 'memq'` resolve through
// package.json "exports" (self-reference from the package root), and the CLI runs.
describe.skipIf(!built)('package entry points (built dist)', () => {
  const script = `
    const q = new Float32Array([1, 0, 0, 1]);
    const index = new m.MemoryIndex({ dim: 2, kernel: 'gaussian', bandwidth: 1 });
    index.add(q, new Float32Array([1, 2]));
    index.search(new Float32Array([0.9, 0.1]), 1).then((r) =>
      console.log(JSON.stringify({ id: r.ids[0], backend: m.backendInfo().backend, kl: typeof m.klImprove })));`;

  it('CommonJS: require("memq")', () => {
    const out = execFileSync(process.execPath, ['-e', `const m = require('memq');${script}`], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ id: 0, backend: 'cpu', kl: 'function' });
  });

  it('ESM: import * as m from "memq"', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import * as m from 'memq';${script}`], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ id: 0, backend: 'cpu', kl: 'function' });
  });

  it('ESM named imports and type declarations exist', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import { MemoryIndex, klImprove } from 'memq'; console.log(typeof MemoryIndex, typeof klImprove)`], { cwd: root, encoding: 'utf8' });
    expect(out.trim()).toBe('function function');
    expect(fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'index.d.ts'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'dist', 'esm', 'index.d.mts'))).toBe(true);
  });

  it('CLI: memq info --json', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'bin', 'memq.js'), 'info', '--json'], { cwd: root, encoding: 'utf8' });
    const info = JSON.parse(out);
    // CUDA only where a device passed the self-test; on a machine without one the reason says why
    expect(['cpu', 'cuda']).toContain(info.backend);
    if (!info.device) expect(info.backend).toBe('cpu');
    expect(typeof info.reason).toBe('string');
    expect(info.threads).toBeGreaterThan(0);
    expect(['scalar', 'avx2', 'avx512']).toContain(info.simd);
    expect(info.memq).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });

  it('CLI: unknown command and unknown flag exit 2 with a clear message', () => {
    let err: any;
    try {
      execFileSync(process.execPath, [path.join(root, 'bin', 'memq.js'), 'info', '--bogus'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = e;
    }
    expect(err?.status).toBe(2);
    expect(String(err?.stderr)).toMatch(/unknown flag --bogus/);
  });
});

it('dist is built (npm install builds it)', () => {
  expect(built || process.env.CI !== 'true').toBe(true);
});
