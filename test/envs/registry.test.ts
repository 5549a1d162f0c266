import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envCheckCommand, envCheck } from '../../lib/cli/commands/env-check';
import { envsCommand } from '../../lib/cli/commands/envs';
import { CliError, type CliIO } from '../../lib/cli/args';
import { envNames, listEnvs, makeEnv } from '../../lib/envs/registry';
import * as api from '../../lib/envs';

const FAKE = path.join(__dirname, '..', 'fixtures', 'fake_env.js');

function bufferIO(): CliIO & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    isTTY: false,
    stdout: (t: string) => {
      io.out += t;
    },
    stderr: (t: string) => {
      io.err += t;
    },
  };
  return io;
}

describe('registry', () => {
  it('lists every environment with task types and splits', () => {
    expect(envNames()).toEqual(['household', 'kitchen', 'gridworld', 'process']);
    const envs = listEnvs();
    const kitchen = envs.find((e) => e.name === 'kitchen')!;
    expect(kitchen.taskTypes).toEqual(['tomato_salad', 'tomato_lettuce_salad', 'tomato_lettuce_onion_salad']);
    expect(kitchen.splits).toEqual(['train', 'valid_seen', 'valid_unseen']);
    expect(kitchen.evalSetSizes).toEqual({ train: null, valid_seen: 60, valid_unseen: 60 });
    expect(envs.find((e) => e.name === 'gridworld')!.taskTypes).toEqual(['grid', 'random_mdp']);
    expect(envs.find((e) => e.name === 'household')!.taskTypes.length).toBeGreaterThan(0);
    for (const e of envs) {
      expect(e.description.length).toBeGreaterThan(10);
      expect(e.description).not.toContain('\n');
    }
  });

  it('makes each environment by name; unknown names name the known ones', async () => {
    for (const name of ['household', 'kitchen', 'gridworld']) {
      const env = makeEnv(name, { maxSteps: 7 });
      expect(env.name).toBe(name);
      const { observation, info } = await env.reset({ seed: 1 });
      expect(observation.length).toBeGreaterThan(0);
      expect(info.admissibleActions.length).toBeGreaterThan(0);
      await env.close();
    }
    expect(() => makeEnv('minecraft')).toThrow(RangeError);
    expect(() => makeEnv('minecraft')).toThrow(/household, kitchen, gridworld, process/);
    expect(() => makeEnv('process', {})).toThrow(/command/);
    const proc = makeEnv('process', { command: process.execPath, args: [FAKE], timeoutMs: 5000 });
    expect((await proc.reset({ seed: 0 })).info.task).toBe('reach the end of the corridor');
    await proc.close();
  });

  it('the index re-exports the public API', () => {
    expect(typeof api.makeEnv).toBe('function');
    expect(typeof api.KitchenEnv).toBe('function');
    expect(typeof api.GridworldEnv).toBe('function');
    expect(typeof api.ProcessEnv).toBe('function');
    expect(typeof api.makeHousehold).toBe('function');
    expect(typeof api.validateMdp).toBe('function');
  });
});

describe('memq envs / env-check', () => {
  it('memq envs prints a table and --json', async () => {
    const io = bufferIO();
    expect(await envsCommand.run([], io)).toBe(0);
    expect(io.out).toMatch(/^kitchen\s+Overcooked/m);
    expect(io.out).toContain('valid_seen (60 games)');
    const j = bufferIO();
    expect(await envsCommand.run(['--json'], j)).toBe(0);
    expect(JSON.parse(j.out).map((e: { name: string }) => e.name)).toEqual(envNames());
    await expect(envsCommand.run(['--bogus'], bufferIO())).rejects.toThrow(CliError);
  });

  it('env-check kitchen --json: expert 100%, random well below', async () => {
    const io = bufferIO();
    const code = await envCheckCommand.run(['kitchen', '--episodes', '10', '--seed', '3', '--json'], io);
    expect(code).toBe(0);
    const report = JSON.parse(io.out);
    expect(report.rows).toHaveLength(9); // 3 splits x 3 task types
    for (const row of report.rows) {
      expect(row.expert.success).toBe(1);
      expect(row.random.success).toBeLessThan(0.6);
      expect(row.random.episodes).toBe(10);
    }
    expect(report.problems).toEqual([]);
    expect(report.stepsPerSecond).toBeGreaterThan(0);
  });

  it('env-check gridworld prints a table; split and task-type filters work', async () => {
    const io = bufferIO();
    expect(await envCheckCommand.run(['gridworld', '--episodes', '5', '--task-type', 'grid'], io)).toBe(0);
    expect(io.out).toMatch(/train\s+grid\s+100\.0%/);
    expect(io.out).toMatch(/steps\/s/);
    await expect(envCheckCommand.run(['gridworld', '--split', 'valid_seen'], bufferIO())).rejects.toThrow(/no split/);
    await expect(envCheckCommand.run(['nope'], bufferIO())).rejects.toThrow(/unknown environment 'nope'/);
    await expect(envCheckCommand.run([], bufferIO())).rejects.toThrow(CliError);
  });

  it('env-check process runs an external program (its expert comes from info.expertAction)', async () => {
    const io = bufferIO();
    const code = await envCheckCommand.run(
      ['process', '--command', process.execPath, '--arg', FAKE, '--episodes', '4', '--json'],
      io,
    );
    expect(code).toBe(0);
    const report = JSON.parse(io.out);
    expect(report.rows).toEqual([
      expect.objectContaining({ split: 'train', taskType: null, expert: expect.objectContaining({ success: 1 }) }),
    ]);
    await expect(envCheckCommand.run(['process'], bufferIO())).rejects.toThrow(/--command/);
  });

  it('env-check reports contract violations and exits 1', async () => {
    // An expert that proposes an inadmissible action is a problem worth failing on.
    const report = await envCheck('gridworld', { maxSteps: 3 }, { episodes: 2, seed: 0, taskType: 'grid' });
    expect(report.problems).toEqual([]);
    const { registerEnv } = await import('../../lib/envs/registry');
    registerEnv(
      'broken-test-env',
      'a gridworld whose expert lies',
      (o) => {
        const env = makeEnv('gridworld', o) as api.GridworldEnv;
        env.expertAction = () => 'teleport';
        return env;
      },
      true,
    );
    const io = bufferIO();
    expect(await envCheckCommand.run(['broken-test-env', '--episodes', '1', '--max-steps', '2'], io)).toBe(1);
    expect(io.out).toMatch(/inadmissible 'teleport'/);
  });
});
