/**
 * The CLI's command table. Each command lives in its own file under lib/cli/commands/ and is
 * registered here with one line. `memq bench` is not here: bench/cli.ts is the benchmarks' own
 * entry, which bin/memq.js passes to main() (the library never imports bench/).
 */
import type { Command } from '../args';
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
  envsCommand,
  envCheckCommand,
  infoCommand,
  modelCommand,
  playCommand,
  poisonCommand,
  solveCommand,
  sweepCommand,
];
