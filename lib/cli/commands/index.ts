/**
 * The CLI's command table. Each command lives in its own file under lib/cli/commands/ and is
 * registered here with one line.
 */
import type { Command } from '../args';
import { benchCommand } from './bench';
import { compareCommand } from './compare';
import { evalCommand } from './eval';
import { runCommand } from './run';
import { envsCommand } from './envs';
import { envCheckCommand } from './env-check';
import { infoCommand } from './info';
import { modelCommand } from './model';
import { playCommand } from './play';
import { poisonCommand } from './poison';
import { solveCommand } from './solve';
import { sweepCommand } from './sweep';

export const commands: Command[] = [
  runCommand,
  evalCommand,
  compareCommand,
  benchCommand,
  envsCommand,
  envCheckCommand,
  infoCommand,
  modelCommand,
  playCommand,
  poisonCommand,
  solveCommand,
  sweepCommand,
];
