/**
 * The CLI's command table. Each command lives in its own file under lib/cli/commands/ and is
 * registered here with one line.
 */
import type { Command } from '../args';
import { infoCommand } from './info';

export const commands: Command[] = [
  infoCommand,
];
