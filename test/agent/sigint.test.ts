import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';

const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'cli', 'main.js'));

// Ctrl-C on the real CLI: it stops after the current episode, leaves a consistent directory
// (summary says interrupted, checkpoint present, metrics whole lines) and --resume finishes it.
describe.skipIf(!built)('memq run and SIGINT', () => {
  it('Ctrl-C stops cleanly and --resume completes the run', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-sigint-'));
    const child = spawn(process.execPath, [path.join(root, 'bin', 'memq.js'), 'run', '--env', 'gridworld', '--agent', 'memq', '--episodes', '600', '--demos', '0', '--eval-games', '5', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const metrics = path.join(out, 'memq-seed1', 'metrics.jsonl');
    const t0 = Date.now();
    while (Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 100));
      if (fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').split('\n').length > 20) break;
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/interrupt received/);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'memq-seed1', 'summary.json'), 'utf8'));
    expect(summary.status).toBe('interrupted');
    expect(summary.episodes).toBeGreaterThan(0);
    expect(summary.episodes).toBeLessThan(600);
    const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n');
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    expect(lines.length).toBe(summary.episodes);
    expect(fs.existsSync(path.join(out, 'memq-seed1', 'checkpoint', 'state.json'))).toBe(true);
    // --resume continues with the saved config to the full budget
    let err = '';
    const r = await main(['run', '--resume', out, '--json'], { stdout: () => undefined, stderr: (t) => (err += t), isTTY: false });
    expect(r, err).toBe(0);
    const done = JSON.parse(fs.readFileSync(path.join(out, 'memq-seed1', 'summary.json'), 'utf8'));
    expect(done.status).toBe('complete');
    expect(done.episodes).toBe(600);
  }, 300_000);
});
