/**
 * `memq play`: play a text environment in the terminal (or from a pipe, for tests and demos).
 *
 *   memq play household --seed 3 [--split valid_unseen] [--task-type pick_heat_then_place]
 *   printf 'go to fridge 1\nquit\n' | memq play household --seed 3
 *
 * Prints each observation and the admissible actions, reads one command per line; `quit`
 * (or end of input) exits, `hint` shows the environment's expert action when it has one.
 */
import * as readline from 'readline';
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { envNames, makeEnv } from '../../envs/registry';
import type { EnvInfo, ResetOptions, TextEnv } from '../../envs/types';

const spec: Record<string, FlagSpec> = {
  seed: { kind: 'int', help: 'game seed (on an evaluation split: game = seed mod set size)', default: 0 },
  split: { kind: 'string', help: "split, e.g. train, valid_seen, valid_unseen (default: the env's training split)" },
  'task-type': { kind: 'string', help: 'task type, e.g. pick_heat_then_place' },
  game: {
    kind: 'int',
    help: 'index into the evaluation split (overrides --seed)',
    check: (v: number) => (v >= 0 ? undefined : `must be >= 0, got ${v}`),
  },
  'max-steps': {
    kind: 'int',
    help: 'truncate the episode after this many steps (default: the env default)',
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  'no-actions': { kind: 'boolean', help: 'do not print the admissible actions after each observation' },
  help: { kind: 'boolean', help: 'show this help' },
};

const USAGE = '[ENV] [--seed N] [--split S] [--task-type T] [--game I] [--max-steps N] [--no-actions]';

function actionsBlock(info: EnvInfo): string {
  return `Admissible actions: ${info.admissibleActions.join(' | ')}\n`;
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec, 'play');
  if (flags.help) {
    io.stdout(formatHelp('play', USAGE, spec) + `\nenvironments: ${envNames().join(', ')}\n` +
      'in the game: type a command; "hint" asks the expert, "quit" exits.\n');
    return 0;
  }
  if (positionals.length > 1) throw new CliError(`memq play: unexpected argument '${positionals[1]}'`);
  const name = positionals[0] ?? 'household';
  if (!io.stdin) throw new CliError('memq play: needs a standard input to read commands from');

  let env: TextEnv;
  try {
    env = makeEnv(name, flags['max-steps'] !== undefined ? { maxSteps: flags['max-steps'] } : {});
  } catch (err) {
    throw new CliError(`memq play: ${(err as Error).message}`);
  }
  const reset: ResetOptions = { seed: flags.seed };
  if (flags.split !== undefined) reset.split = flags.split;
  if (flags['task-type'] !== undefined) reset.taskType = flags['task-type'];
  if (flags.game !== undefined) reset.gameIndex = flags.game;
  const showActions = !flags['no-actions'];

  const rl = readline.createInterface({ input: io.stdin, terminal: false, crlfDelay: Infinity });
  try {
    let r;
    try {
      r = await env.reset(reset);
    } catch (err) {
      throw new CliError(`memq play: ${(err as Error).message}`);
    }
    let info = r.info;
    const header = `[${name}${info.taskType ? ` · ${info.taskType}` : ''}${typeof info.gameId === 'string' ? ` · ${info.gameId}` : ''}]`;
    io.stdout(`${header}\n${r.observation}\n\n`);
    if (showActions) io.stdout(actionsBlock(info));
    io.stdout('> ');
    let steps = 0;
    for await (const raw of rl) {
      if (io.signal?.aborted) break;
      const line = raw.trim();
      if (line === '') {
        io.stdout('> ');
        continue;
      }
      if (line === 'quit' || line === 'exit') {
        io.stdout(`\nBye after ${steps} step${steps === 1 ? '' : 's'}.\n`);
        return 0;
      }
      if (line === 'hint') {
        const a = env.expertAction?.();
        io.stdout(a === undefined ? 'No hint available.\n> ' : `Expert suggests: ${a}\n> `);
        continue;
      }
      const s = await env.step(line);
      steps++;
      info = s.info;
      io.stdout(`${s.observation}\n`);
      if (s.terminated || s.truncated) {
        io.stdout(
          s.info.won
            ? `\n*** You won in ${steps} step${steps === 1 ? '' : 's'} (reward ${s.reward}). ***\n`
            : s.terminated
              ? `\n*** The episode ended after ${steps} steps (reward ${s.reward}). ***\n`
              : `\n*** Out of steps after ${steps}: the task was not completed. ***\n`,
        );
        return 0;
      }
      io.stdout('\n');
      if (showActions) io.stdout(actionsBlock(info));
      io.stdout('> ');
    }
    io.stdout(`\nEnd of input after ${steps} step${steps === 1 ? '' : 's'}.\n`);
    return 0;
  } finally {
    rl.close();
    await env.close();
  }
}

export const playCommand: Command = {
  name: 'play',
  summary: 'play a text environment in the terminal (household, kitchen, ...): reads commands from stdin',
  run,
};
