/**
 * Checks of the paths a command is given, done before anything is written: each failure is a
 * CliError (exit code 2) naming the flag and what was expected, never a raw EEXIST / ENOENT.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError } from './args';

function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

function writable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nearest existing ancestor of p (p itself when it exists). */
function nearestExisting(p: string): { dir: string; stat: fs.Stats } {
  let cur = p;
  for (;;) {
    const st = statOf(cur);
    if (st) return { dir: cur, stat: st };
    const up = path.dirname(cur);
    if (up === cur) return { dir: cur, stat: fs.statSync(cur) };
    cur = up;
  }
}

/** Where a new directory (or file) can be created: its nearest existing ancestor is a writable directory. */
function checkCreatable(where: string, p: string): void {
  const { dir, stat } = nearestExisting(path.dirname(p));
  if (!stat.isDirectory()) throw new CliError(`${where}: cannot create ${p}: ${dir} is a file, not a directory`);
  if (!writable(dir)) throw new CliError(`${where}: cannot create ${p}: ${dir} is not writable`);
}

/**
 * An output directory: absent (it will be created, so its parent chain must allow that) or an
 * existing writable directory. `where` names the command and flag, e.g. "memq run: --out runs/x".
 * Returns the absolute path. Creates nothing.
 */
export function checkOutputDir(where: string, p: string): string {
  if (!p) throw new CliError(`${where}: expects a directory path, got ''`);
  const abs = path.resolve(p);
  const st = statOf(abs);
  if (st) {
    if (!st.isDirectory()) throw new CliError(`${where}: ${abs} exists and is not a directory`);
    if (!writable(abs)) throw new CliError(`${where}: ${abs} is not writable`);
    return abs;
  }
  checkCreatable(where, abs);
  return abs;
}

/** An output file: absent or an existing file (it is replaced), never a directory; its directory can be created. */
export function checkOutputFile(where: string, p: string): string {
  if (!p) throw new CliError(`${where}: expects a file path, got ''`);
  const abs = path.resolve(p);
  const st = statOf(abs);
  if (st) {
    if (st.isDirectory()) throw new CliError(`${where}: ${abs} is a directory, expected a file path`);
    if (!writable(abs)) throw new CliError(`${where}: ${abs} is not writable`);
    return abs;
  }
  checkCreatable(where, abs);
  return abs;
}

/** An existing directory to read from. */
export function checkInputDir(where: string, p: string): string {
  const abs = path.resolve(p);
  const st = statOf(abs);
  if (!st) throw new CliError(`${where}: ${abs} does not exist`);
  if (!st.isDirectory()) throw new CliError(`${where}: ${abs} is not a directory`);
  return abs;
}

/** mkdir -p after the checks passed; a failure still becomes a CliError naming the flag. */
export function makeDir(where: string, dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new CliError(`${where}: cannot create ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Reads and parses a JSON file; `what` names it in errors (e.g. "--resume runs/x: run.json"). */
export function readJsonFile(what: string, file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`${what}: cannot read ${file} (${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`${what}: ${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** Whether a program name resolves to an executable file: a path (with a separator) or a name on PATH. */
export function findExecutable(cmd: string): string | undefined {
  const isExec = (p: string) => {
    try {
      if (!fs.statSync(p).isFile()) return false;
      if (process.platform !== 'win32') fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  const exts = process.platform === 'win32' ? ['', ...(process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';')] : [''];
  if (cmd.includes('/') || cmd.includes(path.sep)) {
    for (const e of exts) if (isExec(path.resolve(cmd + e))) return path.resolve(cmd + e);
    return undefined;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const e of exts) if (isExec(path.join(dir, cmd + e))) return path.join(dir, cmd + e);
  }
  return undefined;
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory', EISDIR: 'is a directory', ENOTDIR: 'not a directory', EACCES: 'permission denied',
  EPERM: 'operation not permitted', EEXIST: 'already exists', ENOTEMPTY: 'directory not empty', ENOSPC: 'no space left on the device',
  EMFILE: 'too many open files', ELOOP: 'too many symbolic links', EINVAL: 'invalid argument', EBADF: 'bad file descriptor',
};

/**
 * An error's message for the user: Node's "ENOENT: no such file or directory, open 'F'" parts
 * become "F: no such file or directory", so no raw error code reaches the terminal.
 */
export function userMessage(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  msg = msg.replace(/\b(E[A-Z]{2,})\b: [^,'()]*?, \w+ '([^']*)'(?: -> '[^']*')?/g, (_m, code: string, file: string) => `${file}: ${ERRNO_TEXT[code] ?? 'cannot access it'}`);
  msg = msg.replace(/\b(E[A-Z]{2,})\b: ?/g, (m, code: string) => (ERRNO_TEXT[code] ? '' : m));
  msg = msg.replace(/\bERR_[A-Z_]{3,}\b:? ?/g, '');
  return msg;
}
