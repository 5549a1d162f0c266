/**
 * The one text format of a (state, action) pair (MATH §10: x = enc(state ⊕ action)): the state,
 * a line break and "> ", then the action. The LLM prior's prompt is the same text up to the
 * action (pairPrompt), so the prior scores exactly the continuation the encoders see.
 */

/** What joins the state and the action: a line break, then "> ". */
export const PAIR_SEPARATOR = '\n> ';

/** A (state, action) pair, the unit the encoders key and the memory stores. */
export interface StateAction {
  state: string;
  action: string;
}

/** The text of a (state, action) pair: state ⊕ action. */
export function pairText(state: string, action: string): string {
  return `${state}${PAIR_SEPARATOR}${action}`;
}

/** The prompt before an action: pairText(state, '') (what the prior conditions on). */
export function pairPrompt(state: string): string {
  return `${state}${PAIR_SEPARATOR}`;
}

/** The pair a pairText came from: the action is the text after the last separator ('' if none). */
export function splitPairText(text: string): StateAction {
  const cut = text.lastIndexOf(PAIR_SEPARATOR);
  return cut >= 0 ? { state: text.slice(0, cut), action: text.slice(cut + PAIR_SEPARATOR.length) } : { state: text, action: '' };
}
