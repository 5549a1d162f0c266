/**
 * The CLI's command table. Each command lives in its own file under lib/cli/commands/ and is
 * registered here with one line.
 */
import type { Command } from '../args';
import { benchCommand } from './bench';
import { envsCommand } from './envs';
import { envCheckCommand } from './env-check';
import { infoCommand } from './info';
import { playCommand } from './play';

export const commands: Command[] = [
  envsCommand,
  envCheckCommand,
  benchCommand,
  infoCommand,
  playCommand,
];
