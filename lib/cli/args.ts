/**
 * Minimal, strict flag parser for the memq CLI. Unknown flags and malformed values are
 * errors (CliError, exit code 2), never silently ignored.
 */

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export type FlagKind = 'string' | 'number' | 'int' | 'boolean' | 'string[]';

export interface FlagSpec {
  kind: FlagKind;
  /** Short description for --help. */
  help: string;
  default?: unknown;
  /**
   * The default as shown by --help when it is not a parse-time default (e.g. a value that comes
   * from the config when the flag is absent): "household", "runs/<date-time>".
   */
  defaultText?: string;
  /** Optional validation: return an error message, or undefined when fine. */
  check?: (value: any) => string | undefined;
}

export interface ParsedArgs {
  flags: Record<string, any>;
  positionals: string[];
}

/** Parse argv (without the command name) against a spec; `--flag value` and `--flag=value`. */
export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, command: string): ParsedArgs {
  const flags: Record<string, any> = {};
  const positionals: string[] = [];
  for (const [name, s] of Object.entries(spec)) {
    if (s.default !== undefined) flags[name] = s.default;
    else if (s.kind === 'boolean') flags[name] = false;
    else if (s.kind === 'string[]') flags[name] = [];
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const s = spec[name];
    if (!s) {
      const known = Object.keys(spec).map((k) => `--${k}`).join(', ');
      throw new CliError(`memq ${command}: unknown flag --${name} (known: ${known || 'none'})`);
    }
    let raw: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (s.kind === 'boolean') {
      if (raw === undefined) flags[name] = true;
      else if (raw === 'true' || raw === '1') flags[name] = true;
      else if (raw === 'false' || raw === '0') flags[name] = false;
      else throw new CliError(`memq ${command}: --${name} takes true or false, got '${raw}'`);
      continue;
    }
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw new CliError(`memq ${command}: --${name} needs a value (${s.kind})`);
      raw = argv[++i];
    }
    let value: unknown = raw;
    if (s.kind === 'number' || s.kind === 'int') {
      const v = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(v)) {
        throw new CliError(`memq ${command}: --${name} expects a finite number, got '${raw}'`);
      }
      if (s.kind === 'int' && !Number.isInteger(v)) {
        throw new CliError(`memq ${command}: --${name} expects an integer, got '${raw}'`);
      }
      value = v;
    }
    if (s.kind === 'string[]') {
      (flags[name] as string[]).push(raw);
      continue;
    }
    if (s.check) {
      const msg = s.check(value);
      if (msg) throw new CliError(`memq ${command}: --${name} ${msg}`);
    }
    flags[name] = value;
  }
  return { flags, positionals };
}

/** What a command gets to talk to the world; tests pass buffers instead of the process streams. */
export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** True when stderr is a terminal (progress bars), false for plain lines. */
  isTTY: boolean;
  stdin?: NodeJS.ReadableStream;
  /** Set by the CLI's SIGINT handler; long jobs poll it and stop cleanly. */
  signal?: AbortSignal;
}

/** A command: returns the process exit code. */
export type Command = {
  name: string;
  summary: string;
  run: (argv: string[], io: CliIO) => Promise<number>;
};

export function formatHelp(command: string, usage: string, spec: Record<string, FlagSpec>): string {
  const lines = [`usage: memq ${command} ${usage}`, ''];
  for (const [name, s] of Object.entries(spec)) {
    const def = s.defaultText !== undefined ? ` (default ${s.defaultText})` : s.default !== undefined ? ` (default ${JSON.stringify(s.default)})` : '';
    lines.push(`  --${name.padEnd(16)} ${s.help}${def}`);
  }
  return lines.join('\n') + '\n';
}
