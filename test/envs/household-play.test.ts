import { Readable } from 'stream';
import { describe, expect, it } from 'vitest';
import { main } from '../../lib/cli/main';
import { HouseholdEnv } from '../../lib/envs/household';

async function play(args: string[], input: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(['play', ...args], {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    isTTY: false,
    stdin: Readable.from([input]),
  });
  return { code, out, err };
}

describe('memq play household', () => {
  it('plays from piped stdin: observations, admissible actions, quit', async () => {
    const { code, out } = await play(['household', '--seed', '3'], 'look\ndance\nquit\n');
    expect(code).toBe(0);
    expect(out).toContain('-= Welcome to TextWorld, ALFRED! =-');
    expect(out).toContain('Your task is to: ');
    expect(out).toContain('Admissible actions: ');
    expect(out).toContain('You are in the middle of a room.');
    expect(out).toContain('Nothing happens.');
    expect(out).toMatch(/Bye after 2 steps\./);
  });

  it('wins when fed the expert transcript, on an evaluation split and task type', async () => {
    const env = new HouseholdEnv();
    env.resetSync({ split: 'valid_unseen', seed: 7, taskType: 'pick_heat_then_place' });
    const actions: string[] = [];
    for (let a = env.expertAction(); a; a = env.expertAction()) {
      actions.push(a);
      env.stepSync(a);
    }
    const { code, out } = await play(
      ['household', '--seed', '7', '--split', 'valid_unseen', '--task-type', 'pick_heat_then_place', '--no-actions'],
      ['hint', ...actions].join('\n') + '\n',
    );
    expect(code).toBe(0);
    expect(out).toContain(`Expert suggests: ${actions[0]}`);
    expect(out).toMatch(/You heat the \w+ \d+ using the microwave 1\./);
    expect(out).toContain(`*** You won in ${actions.length} steps (reward 1). ***`);
    expect(out).not.toContain('Admissible actions:');
  });

  it('ends cleanly at end of input and when out of steps; rejects bad flags', async () => {
    const eof = await play(['household', '--seed', '1'], 'inventory\n');
    expect(eof.code).toBe(0);
    expect(eof.out).toContain('You are not carrying anything.');
    expect(eof.out).toContain('End of input after 1 step.');
    const trunc = await play(['household', '--max-steps', '2'], 'look\nlook\nlook\n');
    expect(trunc.out).toContain('*** Out of steps after 2');
    const bad = await play(['household', '--split', 'nope'], 'quit\n');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/split/);
    const unknown = await play(['nosuchenv'], 'quit\n');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/unknown environment/);
  });
});
