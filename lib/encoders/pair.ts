/**
 * Keys of (state, action) pairs (MATH §10: x = enc(state ⊕ action)) with ⊕ made explicit: the
 * key is the concatenation [w_s · enc_s(state) ; w_a · enc_a(action)] with w_s² + w_a² = 1, so
 * ‖x − x'‖² = w_s² ‖Δstate‖² + w_a² ‖Δaction‖². A bag-of-features encoding of the joined text
 * lets a long state drown the action (two actions at one state would be nearly the same key);
 * here the action keeps a fixed share of the distance whatever the lengths.
 */
import type { Encoder } from './types';
import { splitPairText, type StateAction } from './pairFormat';

export interface PairEncoderOptions {
  /** Encoder of the state text (d_s). */
  state: Encoder;
  /** Encoder of the action text (d_a). */
  action: Encoder;
  /** w_a², the action's share of the squared distance (default 0.5). */
  actionWeight?: number;
  /**
   * Relational features (default on): the action is encoded together with its template, in
   * which numbers become '#' and words that also occur in the state's first line (the task)
   * become 'T' — "take cup 1 from countertop 2" under "put a clean cup in countertop" is also
   * "take T # from T #". Keys of analogous actions in different games then share features.
   */
  relational?: boolean;
}

const STOP = new Set(['a', 'an', 'the', 'some', 'to', 'in', 'on', 'it', 'and', 'of', 'with', 'from', 'task', 'your', 'is', 'go', 'put', 'take', 'them']);

/** The relational template of an action given the state's first line (see PairEncoderOptions). */
export function actionTemplate(state: string, action: string): string {
  const first = state.slice(0, state.indexOf('\n') >= 0 ? state.indexOf('\n') : state.length);
  const taskWords = new Set((first.toLowerCase().match(/[a-z0-9]+/g) ?? []).filter((w) => !STOP.has(w)));
  const toks = action.toLowerCase().match(/[a-z0-9]+/g) ?? [];
  return toks.map((t) => (/^[0-9]+$/.test(t) ? '#' : taskWords.has(t) ? 'T' : t)).join(' ');
}

export class PairEncoder implements Encoder {
  readonly dim: number;
  readonly name: string;
  private readonly ws: number;
  private readonly wa: number;
  private readonly state: Encoder;
  private readonly action: Encoder;
  private readonly relational: boolean;

  constructor(opts: PairEncoderOptions) {
    const share = opts.actionWeight ?? 0.5;
    if (!(share > 0 && share < 1)) throw new RangeError(`actionWeight must be in (0, 1), got ${String(opts.actionWeight)}`);
    this.state = opts.state;
    this.action = opts.action;
    this.ws = Math.sqrt(1 - share);
    this.wa = Math.sqrt(share);
    this.relational = opts.relational ?? true;
    this.dim = opts.state.dim + opts.action.dim;
    this.name = `pair(${opts.state.name};${opts.action.name};wa2=${share}${this.relational ? ';rel' : ''})`;
  }

  /** Keys of K actions at one state: the state is encoded once. */
  async encodePairs(state: string, actions: string[]): Promise<Float32Array> {
    const s = await this.state.encode([state]);
    const a = await this.action.encode(this.relational ? actions.map((x) => `${x}\ntemplate ${actionTemplate(state, x)}`) : actions);
    const ds = this.state.dim, da = this.action.dim, d = this.dim;
    const out = new Float32Array(actions.length * d);
    for (let i = 0; i < actions.length; i++) {
      for (let j = 0; j < ds; j++) out[i * d + j] = this.ws * s[j];
      for (let j = 0; j < da; j++) out[i * d + ds + j] = this.wa * a[i * da + j];
    }
    return out;
  }

  /**
   * Keys of n pairs in one batch: each distinct state is encoded once (one state call), every
   * action in one action call.
   */
  async encodeBatch(pairs: readonly StateAction[]): Promise<Float32Array> {
    const n = pairs.length;
    const stateRow = new Map<string, number>();
    const states: string[] = [];
    const rowOf = new Int32Array(n);
    pairs.forEach((p, i) => {
      let r = stateRow.get(p.state);
      if (r === undefined) {
        r = states.length;
        stateRow.set(p.state, r);
        states.push(p.state);
      }
      rowOf[i] = r;
    });
    const s = n ? await this.state.encode(states) : new Float32Array(0);
    const a = n ? await this.action.encode(pairs.map((p) => (this.relational ? `${p.action}\ntemplate ${actionTemplate(p.state, p.action)}` : p.action))) : new Float32Array(0);
    const ds = this.state.dim, da = this.action.dim, d = this.dim;
    const out = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      const so = rowOf[i] * ds;
      for (let j = 0; j < ds; j++) out[i * d + j] = this.ws * s[so + j];
      for (let j = 0; j < da; j++) out[i * d + ds + j] = this.wa * a[i * da + j];
    }
    return out;
  }

  /** Texts of pairs (pairText); each is split back with splitPairText. Prefer encodeBatch. */
  async encode(texts: string[]): Promise<Float32Array> {
    return this.encodeBatch(texts.map(splitPairText));
  }
}
