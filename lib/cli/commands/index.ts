/**
 * The CLI's command table. Each command lives in its own file under lib/cli/commands/ and is
 * registered here with one line.
 */
import type { Command } from '../args';
import { benchCommand } from './bench';
import { infoCommand } from './info';

export const commands: Command[] = [
  benchCommand,
  infoCommand,
];
