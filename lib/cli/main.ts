import { CliError, type CliIO, type Command } from './args';
import { commands } from './commands/index';
import { version } from '../version';

function usage(all: Command[]): string {
  const lines = ['usage: memq <command> [flags]', '', 'commands:'];
  for (const c of all) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push('', "Run 'memq <command> --help' for a command's flags.");
  return lines.join('\n') + '\n';
}

/**
 * Entry point shared by bin/memq.js and the tests. Returns the exit code. `extra`: commands that
 * live outside the library (bin/memq.js passes `memq bench`, bench/cli.ts), after the built-in ones.
 */
export async function main(argv: string[], io?: Partial<CliIO>, extra: Command[] = []): Promise<number> {
  const all = [...commands, ...extra];
  const fullIO: CliIO = {
    stdout: io?.stdout ?? ((t) => process.stdout.write(t)),
    stderr: io?.stderr ?? ((t) => process.stderr.write(t)),
    isTTY: io?.isTTY ?? Boolean(process.stderr.isTTY),
    stdin: io?.stdin ?? process.stdin,
    signal: io?.signal,
  };
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    fullIO.stdout(usage(all));
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    fullIO.stdout(`${version()}\n`);
    return 0;
  }
  const cmd = all.find((c) => c.name === name);
  if (!cmd) {
    fullIO.stderr(`memq: unknown command '${name}'\n\n${usage(all)}`);
    return 2;
  }
  try {
    return await cmd.run(rest, fullIO);
  } catch (err) {
    if (err instanceof CliError) {
      fullIO.stderr(`${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    fullIO.stderr(`memq ${name}: ${e && e.message ? e.message : String(err)}\n`);
    if (process.env.MEMQ_DEBUG) fullIO.stderr(`${e?.stack ?? ''}\n`);
    return 1;
  }
}
