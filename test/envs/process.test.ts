import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ProcessEnv } from '../../lib/envs/process';

const FAKE = path.join(__dirname, '..', 'fixtures', 'fake_env.js');

function fake(mode: string, extra: string[] = [], options: Partial<ConstructorParameters<typeof ProcessEnv>[0]> = {}) {
  return new ProcessEnv({ command: process.execPath, args: [FAKE, '--mode', mode, ...extra], timeoutMs: 15_000, ...options });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ESRCH');
    return false;
  }
}

describe('ProcessEnv', () => {
  it('plays a normal episode and close() ends the child', async () => {
    const env = fake('normal');
    const r0 = await env.reset({ seed: 0, split: 'train', taskType: 'corridor' });
    expect(r0.observation).toContain('position 0');
    expect(r0.info.admissibleActions).toEqual(['move forward', 'wait']);
    expect(r0.info.task).toBe('reach the end of the corridor');
    expect(env.expertAction()).toBe('move forward');
    const pid = env.pid!;
    expect(isAlive(pid)).toBe(true);
    let total = 0;
    let last;
    for (const a of ['wait', 'move forward', 'move forward', 'move forward']) {
      last = await env.step(a);
      total += last.reward;
    }
    expect(last!.terminated).toBe(true);
    expect(last!.truncated).toBe(false);
    expect(last!.info.won).toBe(true);
    expect(total).toBe(1);
    // Seeds reach the program: seed 1 starts at position 1.
    expect((await env.reset({ seed: 1 })).observation).toContain('position 1');
    await env.close();
    expect(isAlive(pid)).toBe(false);
    await expect(env.step('wait')).rejects.toThrow(/closed/);
    await env.close(); // idempotent
  });

  it('an {"error"} answer rejects that request only', async () => {
    const env = fake('normal');
    await env.reset({ seed: 0 });
    await expect(env.step('fly')).rejects.toThrow(/reported an error on 'step': unknown action: fly/);
    const r = await env.step('move forward');
    expect(r.observation).toContain('position 1');
    await env.close();
  });

  it('timeout: a clear error naming the command, and the child is dead', async () => {
    const env = fake('hang', [], { timeoutMs: 400, startupTimeoutMs: 20_000 });
    await env.reset({ seed: 0 });
    const pid = env.pid!;
    const t0 = Date.now();
    const err = await env.step('wait').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/no answer to 'step' within 400 ms/);
    expect((err as Error).message).toContain('fake_env.js');
    expect((err as Error).message).toContain('fake_env: started in mode hang'); // stderr tail
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(isAlive(pid)).toBe(false);
    // Broken for good: later calls fail fast with the same story.
    await expect(env.reset({ seed: 0 })).rejects.toThrow(/no answer to 'step'/);
    await env.close();
  });

  it('crash: a clear error with the exit code and the stderr tail', async () => {
    const env = fake('crash');
    await env.reset({ seed: 0 });
    const pid = env.pid!;
    const err = (await env.step('wait').catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/exited with code 3 unexpectedly/);
    expect(err.message).toMatch(/simulated crash/);
    expect(isAlive(pid)).toBe(false);
    await env.close();
  });

  it('garbage output: a clear error quoting the line, child killed', async () => {
    const env = fake('garbage');
    await env.reset({ seed: 0 });
    const pid = env.pid!;
    const err = (await env.step('wait').catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/printed a line that is not JSON: "Traceback/);
    expect(isAlive(pid)).toBe(false);
  });

  it('wrong shape: a clear error naming the field, child killed', async () => {
    const env = fake('bad-shape');
    await env.reset({ seed: 0 });
    const pid = env.pid!;
    const err = (await env.step('wait').catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/wrong shape: "observation" must be a string, got 42/);
    expect(isAlive(pid)).toBe(false);
    // Shape errors on reset too (garbage from the first answer).
    const env2 = fake('bad-shape', ['--after', '0']);
    await expect(env2.reset()).rejects.toThrow(/answered 'reset' with the wrong shape/);
  });

  it('unrequested output breaks the environment', async () => {
    const env = fake('unasked');
    await env.reset({ seed: 0 });
    await env.step('wait');
    // Let the stray line arrive while idle (else it would pass for the next answer and be
    // caught as a wrong shape instead: the environment breaks either way).
    await new Promise((r) => setTimeout(r, 300));
    await expect(env.step('wait')).rejects.toThrow(/nobody asked for|wrong shape/);
  });

  it('slow answers within the limit are fine; requests are serialised', async () => {
    const env = fake('slow', ['--delay', '150'], { timeoutMs: 10_000 });
    await env.reset({ seed: 0 });
    // Fired together; answered in order, one at a time.
    const [a, b] = await Promise.all([env.step('move forward'), env.step('move forward')]);
    expect(a.observation).toContain('position 1');
    expect(b.observation).toContain('position 2');
    await env.close();
  });

  it('slow answers beyond the limit time out', async () => {
    const env = fake('slow', ['--delay', '1500'], { timeoutMs: 300 });
    await expect(env.reset({ seed: 0 })).rejects.toThrow(/no answer to 'reset' within 300 ms/);
    expect(isAlive(env.pid!)).toBe(false);
  });

  it('close() escalates to signals for a child that ignores close and SIGTERM', async () => {
    const env = fake('stubborn', [], { closeGraceMs: 200 });
    await env.reset({ seed: 0 });
    const pid = env.pid!;
    const t0 = Date.now();
    await env.close();
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(isAlive(pid)).toBe(false);
  });

  it('a missing program is a clear error, not a hang', async () => {
    const env = new ProcessEnv({ command: '/nonexistent/memq-env-program', timeoutMs: 2_000 });
    await expect(env.reset()).rejects.toThrow(/\/nonexistent\/memq-env-program.*could not start the program/s);
    await env.close();
  });

  it('an idle child does not keep Node alive, and children die with their parent', () => {
    // Compile process.ts to plain JS (it has only type imports), then run a script that opens
    // an env, resets it and forgets to close it: Node must still exit promptly, taking the
    // child with it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-procenv-'));
    try {
      const source = fs.readFileSync(path.join(__dirname, '..', '..', 'lib', 'envs', 'process.ts'), 'utf8');
      const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
      fs.writeFileSync(path.join(dir, 'process.js'), js.outputText);
      const script = `
        const { ProcessEnv } = require(${JSON.stringify(path.join(dir, 'process.js'))});
        const env = new ProcessEnv({ command: process.execPath, args: [${JSON.stringify(FAKE)}, "--mode", "stubborn"] });
        env.reset({ seed: 0 }).then(() => console.log(env.pid));
      `;
      const t0 = Date.now();
      const out = execFileSync(process.execPath, ['-e', script], { timeout: 10_000 }).toString().trim();
      expect(Date.now() - t0).toBeLessThan(8_000);
      const pid = Number(out);
      expect(pid).toBeGreaterThan(0);
      // The orphan is reaped by init, not by us: wait briefly for it to disappear.
      const deadline = Date.now() + 3_000;
      while (Date.now() < deadline && isRunning(pid)) execFileSync('sleep', ['0.05']);
      const survived = isRunning(pid);
      if (survived) process.kill(pid, 'SIGKILL'); // don't leak it when the check fails
      expect(survived).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Alive and not a zombie (an orphan's zombie lingers until init reaps it). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
