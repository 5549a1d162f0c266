/**
 * ProcessEnv: any program that speaks JSON lines over stdio becomes a TextEnv.
 *
 * Protocol (one JSON object per line, one request at a time; schema in docs/envs.md):
 *   -> {"type":"reset","seed":1,"split":"train","taskType":"...","gameIndex":3}
 *   -> {"type":"step","action":"go to desk 1"}
 *   -> {"type":"close"}                       (no answer expected; the program should exit)
 *   <- {"observation":"...","reward":0,"terminated":false,"truncated":false,
 *       "info":{"admissibleActions":["..."],"task":"...","won":false,...}}
 *   <- {"error":"..."}                         (the request failed; the program stays usable)
 *
 * Failure policy: a child that exits, prints a line that is not JSON or not of the expected
 * shape, prints when nobody asked, or does not answer within `timeoutMs`, breaks the
 * environment: the child is killed (SIGKILL), its exit is awaited (no zombie), and this and
 * every later call reject with an Error naming the command, what went wrong and the last
 * lines of its stderr. Children are killed when this Node process exits, and an idle child
 * does not keep the event loop alive.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import type { EnvInfo, EnvOptions, ResetOptions, ResetResult, Split, StepResult, TextEnv } from './types';

export interface ProcessEnvOptions extends EnvOptions {
  /** Program to run (spawned directly, no shell). */
  command: string;
  args?: string[];
  /** Per-request time limit in milliseconds (default 30 000). */
  timeoutMs?: number;
  /**
   * Limit for the first request, which includes starting the program (loading data can be
   * slow); default: timeoutMs.
   */
  startupTimeoutMs?: number;
  /** How long close() waits for a voluntary exit before signalling (default 2 000 ms). */
  closeGraceMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Registry name reported by `name` (default 'process'). */
  name?: string;
  /** What the program can generate; the protocol does not ask it. */
  taskTypes?: string[];
  splits?: Split[];
  evalSetSizes?: Record<string, number>;
  /** Lines of stderr kept for error messages (default 20). */
  stderrLines?: number;
}

export const PROCESS_DEFAULT_TIMEOUT_MS = 30_000;
const MAX_LINE_CHARS = 16 * 1024 * 1024;

// Children still alive, killed if this process exits without closing them.
const liveChildren = new Set<ChildProcessWithoutNullStreams>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

interface Pending {
  type: string;
  resolve: (value: Record<string, unknown>) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class ProcessEnv implements TextEnv {
  readonly name: string;
  readonly taskTypes: readonly string[];
  readonly splits: readonly Split[];
  private readonly options: ProcessEnvOptions;
  private readonly timeoutMs: number;
  private readonly startupTimeoutMs: number;
  private answered = 0;
  private readonly closeGraceMs: number;
  private readonly stderrLines: number;
  private child: ChildProcessWithoutNullStreams | undefined;
  private exited: Promise<void> | undefined;
  private hasExited = false;
  private exitStatus = '';
  private pending: Pending | undefined;
  private broken: Error | undefined;
  private failing: Promise<Error> | undefined;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private stdoutBuffer = '';
  private stderrBuffer = '';
  private stderrTail: string[] = [];
  private lastExpertAction: string | undefined;

  constructor(options: ProcessEnvOptions) {
    if (!options || typeof options.command !== 'string' || options.command.length === 0) {
      throw new TypeError("ProcessEnv: options.command (the program to run) is required");
    }
    this.options = options;
    this.name = options.name ?? 'process';
    this.timeoutMs = options.timeoutMs ?? PROCESS_DEFAULT_TIMEOUT_MS;
    if (!(this.timeoutMs > 0)) throw new RangeError(`ProcessEnv: timeoutMs must be positive, got ${options.timeoutMs}`);
    this.startupTimeoutMs = options.startupTimeoutMs ?? this.timeoutMs;
    if (!(this.startupTimeoutMs > 0)) {
      throw new RangeError(`ProcessEnv: startupTimeoutMs must be positive, got ${options.startupTimeoutMs}`);
    }
    this.closeGraceMs = options.closeGraceMs ?? 2_000;
    this.stderrLines = options.stderrLines ?? 20;
    this.taskTypes = options.taskTypes ?? [];
    this.splits = options.splits ?? ['train'];
  }

  /** The child's pid (undefined before the first request). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The command line, as used in error messages. */
  get commandLine(): string {
    const parts = [this.options.command, ...(this.options.args ?? [])];
    const text = parts.map((p) => (/[\s'"]/.test(p) ? JSON.stringify(p) : p)).join(' ');
    return text.length > 200 ? `${text.slice(0, 197)}...` : text;
  }

  evalSetSize(split: Split): number {
    return this.options.evalSetSizes?.[split] ?? Infinity;
  }

  async reset(options: ResetOptions = {}): Promise<ResetResult> {
    const request: Record<string, unknown> = { type: 'reset' };
    for (const key of ['seed', 'split', 'taskType', 'gameIndex'] as const) {
      if (options[key] !== undefined) request[key] = options[key];
    }
    const msg = await this.request(request);
    return this.validated(() => {
      const observation = this.expectString(msg, 'observation', 'reset');
      const info = this.parseInfo(msg, 'reset');
      return { observation, info };
    });
  }

  async step(action: string): Promise<StepResult> {
    if (typeof action !== 'string') throw new TypeError('ProcessEnv.step: action must be a string');
    const msg = await this.request({ type: 'step', action });
    return this.validated(() => this.parseStep(msg));
  }

  private parseStep(msg: Record<string, unknown>): StepResult {
    const observation = this.expectString(msg, 'observation', 'step');
    const reward = msg.reward;
    if (typeof reward !== 'number' || !Number.isFinite(reward)) {
      return this.protocolError('step', `"reward" must be a finite number, got ${short(reward)}`);
    }
    const terminated = msg.terminated;
    if (typeof terminated !== 'boolean') {
      return this.protocolError('step', `"terminated" must be true or false, got ${short(terminated)}`);
    }
    const truncated = msg.truncated ?? false;
    if (typeof truncated !== 'boolean') {
      return this.protocolError('step', `"truncated" must be true or false, got ${short(truncated)}`);
    }
    const info = this.parseInfo(msg, 'step');
    return { observation, reward, terminated, truncated, info };
  }

  /** The program's own expert suggestion, when its last answer carried `info.expertAction`. */
  expertAction(): string | undefined {
    return this.lastExpertAction;
  }

  /**
   * Ask the program to exit ({"type":"close"} and end of stdin); signal it (SIGTERM, then
   * SIGKILL) if it has not exited after `closeGraceMs`. Resolves once it has exited.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let a request in flight finish (or fail) first.
    await this.queue.catch(() => undefined);
    const child = this.child;
    if (!child || this.hasExited) return;
    try {
      if (!this.broken && child.stdin.writable) {
        child.stdin.write(`${JSON.stringify({ type: 'close' })}\n`);
        child.stdin.end();
      }
    } catch {
      // stdin already closed: fall through to signals
    }
    child.ref();
    if (await this.waitExit(this.closeGraceMs)) return;
    child.kill('SIGTERM');
    if (await this.waitExit(this.closeGraceMs)) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  // -------------------------------------------------------------------------------------

  private request(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    const run = () => this.send(message);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private send(message: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.failing) return this.failing.then((err) => Promise.reject(err));
    if (this.broken) return Promise.reject(this.broken);
    if (this.closed) return Promise.reject(new Error(`ProcessEnv (${this.commandLine}): the environment is closed`));
    this.start();
    // start() may have failed synchronously (spawn threw).
    const failing = this.failing as Promise<Error> | undefined;
    if (failing) return failing.then((err) => Promise.reject(err));
    if (this.broken as Error | undefined) return Promise.reject(this.broken);
    const type = String(message.type);
    const limit = this.answered === 0 ? this.startupTimeoutMs : this.timeoutMs;
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        void this.fail(`no answer to '${type}' within ${limit} ms; the program was killed`);
      }, limit);
      this.pending = { type, resolve, reject, timer };
      this.setActive(true);
      try {
        this.child!.stdin.write(`${JSON.stringify(message)}\n`);
      } catch (err) {
        void this.fail(`could not write the '${type}' request: ${(err as Error).message}`);
      }
    }).then((msg) => {
      if (typeof msg.error === 'string' || (msg.error !== undefined && msg.observation === undefined)) {
        throw new Error(`ProcessEnv (${this.commandLine}): the environment reported an error on '${type}': ${String(msg.error)}`);
      }
      return msg;
    });
  }

  private start(): void {
    if (this.child) return;
    installExitHook();
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(this.options.command, this.options.args ?? [], {
        cwd: this.options.cwd,
        env: this.options.env ?? process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
      });
    } catch (err) {
      this.broken = new Error(`ProcessEnv (${this.commandLine}): could not start the program: ${(err as Error).message}`);
      return;
    }
    this.child = child;
    liveChildren.add(child);
    this.exited = new Promise<void>((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (done) return;
        done = true;
        this.hasExited = true;
        liveChildren.delete(child);
        this.exitStatus = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        resolve();
      };
      child.once('exit', finish);
      // A child that never started emits 'error' and maybe no 'exit'.
      child.once('error', (err) => {
        void this.fail(`could not start the program: ${err.message}`);
        if (child.pid === undefined) finish(null, null);
      });
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onStdout(chunk));
    child.stderr.on('data', (chunk: string) => this.onStderr(chunk));
    child.stdin.on('error', () => {
      // EPIPE when the child is gone: its exit is reported through 'close'.
    });
    // 'close' fires once the process has exited and its output has been read.
    child.once('close', () => {
      if (!this.closed || this.pending) this.fail(`the program ${this.exitStatus || 'exited'} unexpectedly`);
    });
    this.setActive(false);
  }

  /** Ref the child while a request is in flight, so an idle env never keeps Node alive. */
  private setActive(active: boolean): void {
    const child = this.child;
    if (!child || this.hasExited) return;
    const streams = [child.stdout, child.stderr, child.stdin] as unknown as { ref?: () => void; unref?: () => void }[];
    if (active) {
      child.ref();
      for (const s of streams) s.ref?.();
    } else {
      child.unref();
      for (const s of streams) s.unref?.();
    }
  }

  private onStdout(chunk: string): void {
    this.stdoutBuffer += chunk;
    let nl: number;
    while ((nl = this.stdoutBuffer.indexOf('\n')) >= 0) {
      const line = this.stdoutBuffer.slice(0, nl).replace(/\r$/, '');
      this.stdoutBuffer = this.stdoutBuffer.slice(nl + 1);
      this.onLine(line);
      if (this.broken) return;
    }
    if (this.stdoutBuffer.length > MAX_LINE_CHARS) this.fail(`printed a line longer than ${MAX_LINE_CHARS} characters`);
  }

  private onLine(line: string): void {
    if (line.trim() === '') return;
    if (this.broken) return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      void this.fail(`printed a line that is not JSON: ${short(line)}`);
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      void this.fail(`printed JSON that is not an object: ${short(line)}`);
      return;
    }
    const pending = this.pending;
    if (!pending) {
      void this.fail(`printed a line nobody asked for: ${short(line)}`);
      return;
    }
    this.pending = undefined;
    this.answered++;
    clearTimeout(pending.timer);
    this.setActive(false);
    pending.resolve(msg as Record<string, unknown>);
  }

  private onStderr(chunk: string): void {
    this.stderrBuffer += chunk;
    const lines = this.stderrBuffer.split('\n');
    this.stderrBuffer = lines.pop() ?? '';
    if (this.stderrBuffer.length > 4096) this.stderrBuffer = this.stderrBuffer.slice(-4096);
    for (const line of lines) {
      if (line.trim() === '') continue;
      this.stderrTail.push(line.length > 500 ? `${line.slice(0, 497)}...` : line);
      if (this.stderrTail.length > this.stderrLines) this.stderrTail.shift();
    }
  }

  private stderrReport(): string {
    const tail = this.stderrBuffer.trim() ? [...this.stderrTail, this.stderrBuffer.trim()] : this.stderrTail;
    if (tail.length === 0) return '';
    return `\n  last lines of its stderr:\n${tail.slice(-this.stderrLines).map((l) => `    ${l}`).join('\n')}`;
  }

  /**
   * Break the environment: kill the child, wait for its exit, then reject the pending request.
   * Resolves to the final error (with the stderr tail) once the child is gone.
   */
  private fail(reason: string): Promise<Error> {
    if (this.failing) return this.failing;
    const pending = this.pending;
    this.pending = undefined;
    if (pending) clearTimeout(pending.timer);
    const during = pending ? ` (during '${pending.type}')` : '';
    const child = this.child;
    // Mark broken at once so nothing else is sent; the full message waits for the exit.
    this.broken = new Error(`ProcessEnv (${this.commandLine}): ${reason}${during}.`);
    const gone = child && !this.hasExited ? this.exited! : Promise.resolve();
    if (child && !this.hasExited) {
      child.ref();
      child.kill('SIGKILL');
    }
    this.failing = gone.then(() => {
      this.broken = new Error(`ProcessEnv (${this.commandLine}): ${reason}${during}.${this.stderrReport()}`);
      pending?.reject(this.broken);
      return this.broken;
    });
    return this.failing;
  }

  private async waitExit(ms: number): Promise<boolean> {
    if (this.hasExited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const ok = await Promise.race([this.exited!.then(() => true), timeout]);
    clearTimeout(timer);
    return ok;
  }

  private protocolError(type: string, what: string): never {
    throw new ShapeError(`answered '${type}' with the wrong shape: ${what}`);
  }

  /** Validate an answer; a wrong shape breaks the environment (after the child has exited). */
  private async validated<T>(parse: () => T): Promise<T> {
    try {
      return parse();
    } catch (err) {
      if (err instanceof ShapeError) throw await this.fail(err.message);
      throw err;
    }
  }

  private expectString(msg: Record<string, unknown>, key: string, type: string): string {
    const v = msg[key];
    if (typeof v !== 'string') return this.protocolError(type, `"${key}" must be a string, got ${short(v)}`);
    return v;
  }

  private parseInfo(msg: Record<string, unknown>, type: string): EnvInfo {
    const info = msg.info;
    if (info === null || typeof info !== 'object' || Array.isArray(info)) {
      return this.protocolError(type, `"info" must be an object, got ${short(info)}`);
    }
    const raw = info as Record<string, unknown>;
    const actions = raw.admissibleActions;
    if (!Array.isArray(actions) || actions.some((a) => typeof a !== 'string')) {
      return this.protocolError(type, `"info.admissibleActions" must be an array of strings, got ${short(actions)}`);
    }
    const task = raw.task ?? '';
    if (typeof task !== 'string') return this.protocolError(type, `"info.task" must be a string, got ${short(task)}`);
    const won = raw.won ?? false;
    if (typeof won !== 'boolean') return this.protocolError(type, `"info.won" must be true or false, got ${short(won)}`);
    this.lastExpertAction = typeof raw.expertAction === 'string' ? raw.expertAction : undefined;
    return { ...raw, admissibleActions: actions as string[], task, won };
  }
}

class ShapeError extends Error {}

function short(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

export function makeProcessEnv(options?: EnvOptions): ProcessEnv {
  return new ProcessEnv(options as ProcessEnvOptions);
}
