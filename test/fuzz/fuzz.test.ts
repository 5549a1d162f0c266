/**
 * The fuzz suite in `npm test`: a few thousand calls over every entry point (seeded; bounded
 * by --time-limit), and a self-test of the harness's oracles on entries that misbehave on
 * purpose. `npm run fuzz -- --calls 100000` is the long run; see scripts/fuzz.js --help.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '../..');
const SCRIPT = path.join(ROOT, 'scripts', 'fuzz.js');

function fuzz(args: string[], env: Record<string, string> = {}) {
  const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'memq-fuzz-test-')), 'report.json');
  const r = spawnSync(process.execPath, [SCRIPT, ...args, '--quiet', '--report', report], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 170_000,
  });
  const json = fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : undefined;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, report: json };
}

describe('fuzz suite', () => {
  it('the harness reports wrong classes, accepted bad input, changed state and wrong results', () => {
    const only = 'selftest.ok,selftest.wrongClass,selftest.accepts,selftest.stateChange,selftest.wrongResult';
    const r = fuzz(['--calls', '200', '--seed', '5', '--batch-size', '100', '--only', only], { MEMQ_FUZZ_SELFTEST: '1' });
    expect(r.status, r.stdout + r.stderr).toBe(1);
    const kinds = new Set<string>(r.report.findings.map((f: { kind: string }) => f.kind));
    expect([...kinds].sort()).toEqual(['unchanged-state', 'wrong-class', 'wrong-result']);
    expect(r.report.calls).toBe(200);
    // Accepted bad input is a wrong-class finding too; every finding can be replayed.
    expect(r.report.findings.some((f: { entry: string; kind: string }) => f.entry === 'selftest.accepts' && f.kind === 'wrong-class')).toBe(true);
    expect(r.stdout).toMatch(/replay: node scripts\/fuzz\.js --seed 5 --batch \d+ --calls \d+ --verbose/);
    expect(r.stdout).toMatch(/^fuzz: 200 calls, 0 crashes, [1-9]\d* wrong-class errors, [1-9]\d* unchanged-state violations, [1-9]\d* wrong results$/m);
  }, 120_000);

  it('the harness reports a crash of a child process with the exact call', () => {
    const r = fuzz(['--calls', '40', '--seed', '5', '--batch-size', '20', '--only', 'selftest.ok,selftest.abort'], { MEMQ_FUZZ_SELFTEST: '1' });
    expect(r.status, r.stdout + r.stderr).toBe(1);
    const crash = r.report.findings.find((f: { kind: string }) => f.kind === 'crash');
    expect(crash.call).toBe('process.abort()');
    expect(crash.detail).toMatch(/SIGABRT/);
    expect(r.stdout).toMatch(/^fuzz: \d+ calls, [1-9]\d* crashes, 0 wrong-class errors/m);
  }, 120_000);

  it('every public entry point: no crash, documented error classes, state unchanged after errors, right results', () => {
    const seed = process.env.MEMQ_FUZZ_SEED ?? '20261202';
    const r = fuzz(['--calls', '4000', '--seed', seed, '--time-limit', '45', '--batch-size', '250']);
    const line = r.stdout.split('\n').find((l) => l.startsWith('fuzz: ') && l.includes(' calls, '));
    console.log(line);
    expect(line, r.stderr).toBeDefined();
    expect(r.report.calls).toBeGreaterThan(100);
    // On failure the message holds every distinct finding with its replay command.
    expect(r.status, r.stdout).toBe(0);
    expect(line).toMatch(/, 0 crashes, 0 wrong-class errors, 0 unchanged-state violations, 0 wrong results$/);
  }, 180_000);
});
