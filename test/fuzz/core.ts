/**
 * The fuzz suite's vocabulary: an Entry (one public entry point, with a weight) makes Calls;
 * a Call says what it runs, what it may do (Expect), how to check a result, and how to compare
 * the target's state with the model; `judge` turns an outcome into findings.
 */
import type { FuzzRng } from './rng';
import { Expect, type ErrClass } from './values';

export type Area = 'native/addon' | 'lib/retrieval' | 'lib/memory' | 'lib/llm' | 'CLI';

export type FindingKind = 'crash' | 'hang' | 'wrong-class' | 'unchanged-state' | 'wrong-result';

export interface Finding {
  kind: FindingKind;
  area: Area;
  entry: string;
  /** What was called (JavaScript-like source). */
  call: string;
  detail: string;
  seed?: number;
  batch?: number;
  /** Continuation part of the batch (after a crash); 0 when absent. */
  part?: number;
  index?: number;
}

export interface Call {
  /** The call as source, for the report and replay. */
  desc: string;
  expect: Expect;
  /** Runs the call (may return a Promise; its rejection counts as a throw). */
  run(): unknown;
  /** After success: check the result and update the model; a message means a wrong result. */
  onOk?(result: unknown): string | undefined | Promise<string | undefined>;
  /** After either outcome: the target's state against the model (after an error: unchanged). */
  check?(): string | undefined | Promise<string | undefined>;
  /** After an error only: the target's state against the state before the call. */
  unchanged?(): string | undefined | Promise<string | undefined>;
  /** After a finding: drop the target so one fault does not cascade. */
  discard?(): void;
  /** Area to blame when it is not the entry's (e.g. a lib/ reader over the addon). */
  area?: Area;
  /** The kind of finding a failed onOk is (default 'wrong-result'; the CLI's exit-code checks: 'wrong-class'). */
  okKind?: FindingKind;
}

/** Per-batch context handed to the generators: the RNG, a scratch dir, and each target's pool. */
export interface Ctx {
  rng: FuzzRng;
  tmp: string;
  /** Unique names in tmp. */
  fresh(prefix: string): string;
  pools: Record<string, unknown>;
}

export interface Entry {
  name: string;
  area: Area;
  weight: number;
  /** undefined when the entry cannot run now (e.g. nothing in its pool yet). */
  make(ctx: Ctx): Call | undefined | Promise<Call | undefined>;
}

export function classOf(err: unknown): ErrClass | 'non-Error' {
  if (err instanceof TypeError) return 'TypeError';
  if (err instanceof RangeError) return 'RangeError';
  if (err instanceof Error) return 'Error';
  return 'non-Error';
}

/**
 * Messages of errors the engine or Node raised on their own, not the library's validation:
 * the class may be right but the argument is not named ("Cannot read properties of null").
 */
const RAW = [
  /Cannot read propert/,
  /Cannot set propert/,
  /is not a function/,
  /is not iterable/,
  /Cannot convert/,
  /is not defined/,
  /Invalid array length/,
  /Invalid typed array length/,
  /Array buffer allocation failed/,
  /Maximum call stack size exceeded/,
  /Cannot destructure/,
  /Cannot perform .* on a detached ArrayBuffer/,
  // JSON.parse's own messages (a wrapped one starts with the file's name instead)
  /^(Unexpected (token|end of JSON|non-whitespace)|Unterminated string in JSON|Expected .* in JSON at position|Bad control character|"[^"]*" is not valid JSON$)/,
];

export function rawEngineError(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return RAW.some((re) => re.test(msg));
}

export function errText(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message}`.slice(0, 600);
  return `thrown ${typeof err}: ${String(err)}`.slice(0, 600);
}

export interface Outcome {
  threw: boolean;
  error?: unknown;
  value?: unknown;
}

/** Findings for one call's outcome (the state check runs here too). */
export async function judge(call: Call, out: Outcome): Promise<{ kind: FindingKind; detail: string }[]> {
  const found: { kind: FindingKind; detail: string }[] = [];
  const e = call.expect;
  if (out.threw) {
    const cls = classOf(out.error);
    const msg = out.error instanceof Error ? out.error.message : String(out.error);
    if (cls === 'non-Error' || !e.errors.has(cls)) {
      found.push({
        kind: 'wrong-class',
        detail: `threw ${errText(out.error)}; expected ${e.text()}${e.why.length ? ` (${e.why.join('; ')})` : ' (a valid call)'}`,
      });
    } else if (rawEngineError(out.error)) {
      found.push({ kind: 'wrong-class', detail: `raw engine error, the argument is not named: ${errText(out.error)} (${e.why.join('; ')})` });
    } else if (e.names && !e.names.some((n) => msg.includes(n))) {
      found.push({ kind: 'wrong-class', detail: `${errText(out.error)} does not name the file (one of ${e.names.join(', ')})` });
    } else if (!msg.trim()) {
      found.push({ kind: 'wrong-class', detail: `${cls} with an empty message` });
    }
    const s = (await safeCheck(call, 'check')) ?? (await safeCheck(call, 'unchanged'));
    if (s) found.push({ kind: 'unchanged-state', detail: `after ${errText(out.error)}: ${s}` });
  } else if (!e.ok) {
    found.push({ kind: 'wrong-class', detail: `no error; expected ${e.text()} (${e.why.join('; ')})` });
  } else {
    let w: string | undefined;
    try {
      w = await call.onOk?.(out.value);
    } catch (err) {
      w = `checking the result threw ${errText(err)}`;
    }
    if (w) found.push({ kind: call.okKind ?? 'wrong-result', detail: w });
    else {
      const s = await safeCheck(call, 'check');
      if (s) found.push({ kind: 'wrong-result', detail: `state after success: ${s}` });
    }
  }
  return found;
}

async function safeCheck(call: Call, which: 'check' | 'unchanged'): Promise<string | undefined> {
  try {
    return await call[which]?.();
  } catch (err) {
    return `reading the state threw ${errText(err)}`;
  }
}

export { Expect };
