/**
 * Kitchen state, macro-actions and their effects: the Overcooked salad game that TWOSOME
 * (Tan et al. 2024) plays with LLM agents, as a single-agent text game.
 *
 * Macro-actions walk the agent over the grid (shortest floor path) and then act, so one
 * text action can cost several grid moves (reported as `moves`). Only valid actions are
 * admissible; an inadmissible action changes nothing.
 *
 * Reward (per step, summed):
 *   -0.001                 every step (admissible or not);
 *   +0.2                   the first time each ingredient of the recipe becomes chopped;
 *   +0.2                   the first time each chopped ingredient of the recipe enters the bowl;
 *   +1                     serving a bowl whose contents are exactly the recipe (terminates, won);
 *   -0.1                   serving anything else (the dish is sent back; the agent keeps the bowl).
 * Chopping or bowling an ingredient that is not in the recipe earns nothing.
 */
import {
  INGREDIENTS,
  type Cell,
  type Ingredient,
  type MapGeometry,
  type Placement,
  isAdjacent,
  mapGeometry,
  sameCell,
  floorDistances,
  accessCells,
  cellKey,
  walkTo,
} from './layout';

export const REWARD = {
  step: -0.001,
  subtask: 0.2,
  correctDelivery: 1,
  wrongDelivery: -0.1,
} as const;

export interface Recipe {
  taskType: string;
  dish: string;
  ingredients: readonly Ingredient[];
}

export const RECIPES: readonly Recipe[] = [
  { taskType: 'tomato_salad', dish: 'tomato salad', ingredients: ['tomato'] },
  { taskType: 'tomato_lettuce_salad', dish: 'tomato-lettuce salad', ingredients: ['tomato', 'lettuce'] },
  { taskType: 'tomato_lettuce_onion_salad', dish: 'tomato-lettuce-onion salad', ingredients: ['tomato', 'lettuce', 'onion'] },
];

export function recipeFor(taskType: string): Recipe {
  const recipe = RECIPES.find((r) => r.taskType === taskType);
  if (!recipe) {
    throw new RangeError(`kitchen: unknown task type '${taskType}' (known: ${RECIPES.map((r) => r.taskType).join(', ')})`);
  }
  return recipe;
}

export type Item = Ingredient | 'bowl';

/** Where an item is. Ingredients may be in the bowl; the bowl may be delivered. */
export type Place =
  | { kind: 'counter'; cell: Cell }
  | { kind: 'board'; board: 0 | 1 }
  | { kind: 'held' }
  | { kind: 'bowl' }
  | { kind: 'served' };

export interface KitchenState {
  geometry: MapGeometry;
  recipe: Recipe;
  agent: Cell;
  places: Record<Item, Place>;
  chopped: Record<Ingredient, boolean>;
  /** Subtask rewards already paid (each at most once per episode). */
  paidChop: Set<Ingredient>;
  paidBowl: Set<Ingredient>;
  won: boolean;
}

export function initialState(placement: Placement, recipe: Recipe): KitchenState {
  const geometry = mapGeometry(placement.mapId);
  const places = {} as Record<Item, Place>;
  for (const item of [...INGREDIENTS, 'bowl'] as Item[]) places[item] = { kind: 'counter', cell: placement.items[item] };
  return {
    geometry,
    recipe,
    agent: { ...placement.agent },
    places,
    chopped: { tomato: false, lettuce: false, onion: false },
    paidChop: new Set(),
    paidBowl: new Set(),
    won: false,
  };
}

const BOARD_NAMES = ['first', 'second'] as const;

export function held(s: KitchenState): Item | null {
  for (const item of [...INGREDIENTS, 'bowl'] as Item[]) if (s.places[item].kind === 'held') return item;
  return null;
}

export function bowlContents(s: KitchenState): Ingredient[] {
  return INGREDIENTS.filter((i) => s.places[i].kind === 'bowl');
}

/** The item on a board, if any. */
export function onBoard(s: KitchenState, board: 0 | 1): Item | null {
  for (const item of [...INGREDIENTS, 'bowl'] as Item[]) {
    const p = s.places[item];
    if (p.kind === 'board' && p.board === board) return item;
  }
  return null;
}

/** Grid cell of an item lying on a counter or a board (undefined when held/in bowl/served). */
export function itemCell(s: KitchenState, item: Item): Cell | undefined {
  const p = s.places[item];
  if (p.kind === 'counter') return p.cell;
  if (p.kind === 'board') return s.geometry.boards[p.board];
  return undefined;
}

function onTable(s: KitchenState, item: Item): boolean {
  const k = s.places[item].kind;
  return k === 'counter' || k === 'board';
}

export function inFrontOfBoard(s: KitchenState, board: 0 | 1): boolean {
  return isAdjacent(s.agent, s.geometry.boards[board]);
}

/** Nearest empty counter the agent can reach (ties: row-major order), with its access cell. */
export function nearestFreeCounter(s: KitchenState): Cell | undefined {
  const occupied = new Set<string>();
  for (const item of [...INGREDIENTS, 'bowl'] as Item[]) {
    const p = s.places[item];
    if (p.kind === 'counter') occupied.add(cellKey(p.cell));
  }
  const dist = floorDistances(s.geometry, s.agent);
  let best: { cell: Cell; d: number } | undefined;
  for (const cell of s.geometry.counters) {
    if (occupied.has(cellKey(cell))) continue;
    let d = Infinity;
    for (const a of accessCells(s.geometry, cell)) d = Math.min(d, dist.get(cellKey(a)) ?? Infinity);
    if (d === Infinity) continue;
    if (!best || d < best.d) best = { cell, d };
  }
  return best?.cell;
}

// ---------------------------------------------------------------------------------------
// Admissible actions

/** Admissible macro-actions, in a fixed order. */
export function admissibleActions(s: KitchenState): string[] {
  if (s.won) return [];
  const actions: string[] = [];
  const h = held(s);
  const boards: (0 | 1)[] = [0, 1];
  if (h === null) {
    for (const ing of INGREDIENTS) if (onTable(s, ing)) actions.push(`pick up the ${ing}`);
    if (onTable(s, 'bowl')) actions.push(bowlContents(s).length === 0 ? 'take the empty bowl' : 'take the bowl');
    if (onTable(s, 'bowl')) for (const ing of bowlContents(s)) actions.push(`take the ${ing} out of the bowl`);
    for (const b of boards) {
      const item = onBoard(s, b);
      if (item && item !== 'bowl' && !s.chopped[item] && inFrontOfBoard(s, b)) actions.push(`chop the ${item}`);
    }
  } else if (h === 'bowl') {
    for (const ing of INGREDIENTS) if (onTable(s, ing) && s.chopped[ing]) actions.push(`put the ${ing} in the bowl`);
    for (const b of boards) if (onBoard(s, b) === null) actions.push(`put the bowl on the ${BOARD_NAMES[b]} cutting board`);
    if (nearestFreeCounter(s)) actions.push('put the bowl on the counter');
    actions.push('serve the dish');
  } else {
    for (const b of boards) if (onBoard(s, b) === null) actions.push(`put the ${h} on the ${BOARD_NAMES[b]} cutting board`);
    if (s.chopped[h] && onTable(s, 'bowl')) actions.push(`put the ${h} in the bowl`);
    if (nearestFreeCounter(s)) actions.push(`put the ${h} on the counter`);
  }
  for (const b of boards) if (!inFrontOfBoard(s, b)) actions.push(`walk to the ${BOARD_NAMES[b]} cutting board`);
  return actions;
}

// ---------------------------------------------------------------------------------------
// Transitions

export interface Outcome {
  feedback: string;
  reward: number;
  /** Grid moves the macro-action took. */
  moves: number;
  admissible: boolean;
}

function describeIngredient(s: KitchenState, ing: Ingredient): string {
  return s.chopped[ing] ? `the chopped ${ing}` : `the ${ing}`;
}

/** Walk next to `target`; returns the number of moves. */
function walk(s: KitchenState, target: Cell): number {
  if (isAdjacent(s.agent, target)) return 0;
  const w = walkTo(s.geometry, s.agent, target);
  if (!w) throw new Error('kitchen: target unreachable (map invariant broken)');
  s.agent = { ...w.cell };
  return w.moves;
}

function bowlReward(s: KitchenState, ing: Ingredient): number {
  if (!s.recipe.ingredients.includes(ing) || s.paidBowl.has(ing)) return 0;
  s.paidBowl.add(ing);
  return REWARD.subtask;
}

/** Apply an action in place. Inadmissible actions change nothing. */
export function applyAction(s: KitchenState, rawAction: string): Outcome {
  const action = rawAction.trim().toLowerCase().replace(/\s+/g, ' ');
  if (!admissibleActions(s).includes(action)) {
    return { feedback: 'Nothing happens.', reward: REWARD.step, moves: 0, admissible: false };
  }
  let reward = REWARD.step;
  let moves = 0;
  let feedback = '';
  let m: RegExpMatchArray | null;
  const boardIndex = (name: string): 0 | 1 => (name === 'first' ? 0 : 1);

  if ((m = action.match(/^walk to the (first|second) cutting board$/))) {
    moves = walk(s, s.geometry.boards[boardIndex(m[1])]);
    feedback = `You walk to the ${m[1]} cutting board.`;
  } else if ((m = action.match(/^pick up the (tomato|lettuce|onion)$/))) {
    const ing = m[1] as Ingredient;
    moves = walk(s, itemCell(s, ing)!);
    s.places[ing] = { kind: 'held' };
    feedback = `You pick up ${describeIngredient(s, ing)}.`;
  } else if (action === 'take the empty bowl' || action === 'take the bowl') {
    moves = walk(s, itemCell(s, 'bowl')!);
    s.places.bowl = { kind: 'held' };
    feedback = 'You take the bowl.';
  } else if ((m = action.match(/^take the (tomato|lettuce|onion) out of the bowl$/))) {
    const ing = m[1] as Ingredient;
    moves = walk(s, itemCell(s, 'bowl')!);
    s.places[ing] = { kind: 'held' };
    feedback = `You take ${describeIngredient(s, ing)} out of the bowl.`;
  } else if ((m = action.match(/^chop the (tomato|lettuce|onion)$/))) {
    const ing = m[1] as Ingredient;
    s.chopped[ing] = true;
    feedback = `You chop the ${ing}.`;
    if (s.recipe.ingredients.includes(ing) && !s.paidChop.has(ing)) {
      s.paidChop.add(ing);
      reward += REWARD.subtask;
    }
  } else if ((m = action.match(/^put the (tomato|lettuce|onion|bowl) on the (first|second) cutting board$/))) {
    const item = m[1] as Item;
    const board = boardIndex(m[2]);
    moves = walk(s, s.geometry.boards[board]);
    s.places[item] = { kind: 'board', board };
    feedback = `You put the ${item} on the ${m[2]} cutting board.`;
  } else if ((m = action.match(/^put the (tomato|lettuce|onion|bowl) on the counter$/))) {
    const item = m[1] as Item;
    const cell = nearestFreeCounter(s)!;
    moves = walk(s, cell);
    s.places[item] = { kind: 'counter', cell: { ...cell } };
    feedback = `You put the ${item} on the counter.`;
  } else if ((m = action.match(/^put the (tomato|lettuce|onion) in the bowl$/))) {
    const ing = m[1] as Ingredient;
    if (held(s) === 'bowl') {
      // Holding the bowl: go to the chopped ingredient and scoop it in.
      moves = walk(s, itemCell(s, ing)!);
    } else {
      // Holding the ingredient: go to the bowl and drop it in.
      moves = walk(s, itemCell(s, 'bowl')!);
    }
    s.places[ing] = { kind: 'bowl' };
    reward += bowlReward(s, ing);
    feedback = `You put the chopped ${ing} in the bowl.`;
  } else if (action === 'serve the dish') {
    moves = walk(s, s.geometry.serving);
    const contents = bowlContents(s);
    const want = s.recipe.ingredients;
    const correct = contents.length === want.length && want.every((i) => contents.includes(i));
    if (correct) {
      s.places.bowl = { kind: 'served' };
      for (const ing of contents) s.places[ing] = { kind: 'served' };
      s.won = true;
      reward += REWARD.correctDelivery;
      feedback = `You serve the ${s.recipe.dish}. The customer is delighted!`;
    } else {
      reward += REWARD.wrongDelivery;
      const what = contents.length === 0 ? 'an empty bowl' : `a bowl of chopped ${listWords(contents)}`;
      feedback = `You serve ${what}, but the order is a ${s.recipe.dish}. The dish is sent back.`;
    }
  } else {
    // Unreachable: every admissible action is handled above.
    throw new Error(`kitchen: unhandled admissible action '${action}'`);
  }
  return { feedback, reward, moves, admissible: true };
}

// ---------------------------------------------------------------------------------------
// Observation text

export function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

function ingredientPhrase(s: KitchenState, ing: Ingredient): string {
  return s.chopped[ing] ? `a chopped ${ing}` : article(`unchopped ${ing}`);
}

function bowlPhrase(s: KitchenState): string {
  const contents = bowlContents(s);
  return contents.length === 0 ? 'an empty bowl' : `a bowl containing chopped ${listWords(contents)}`;
}

function itemPhrase(s: KitchenState, item: Item): string {
  return item === 'bowl' ? bowlPhrase(s) : ingredientPhrase(s, item);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function taskText(recipe: Recipe): string {
  const parts = recipe.ingredients.map((i) => `chopped ${i}`);
  return `make a ${recipe.dish} (${listWords(parts)} in a bowl) and serve it`;
}

/** A description of the whole kitchen, in TWOSOME's style. */
export function describe(s: KitchenState): string {
  const sentences: string[] = ['There are two cutting boards and a serving counter in the kitchen.'];
  const onCounters: Item[] = ([...INGREDIENTS, 'bowl'] as Item[]).filter((i) => s.places[i].kind === 'counter');
  if (onCounters.length > 0) {
    const verb = onCounters.length === 1 ? 'a counter' : 'the counters';
    sentences.push(`You notice ${listWords(onCounters.map((i) => itemPhrase(s, i)))} on ${verb}.`);
  }
  for (const b of [0, 1] as const) {
    const item = onBoard(s, b);
    sentences.push(
      item === null
        ? `The ${BOARD_NAMES[b]} cutting board is empty.`
        : `${capitalize(itemPhrase(s, item))} is on the ${BOARD_NAMES[b]} cutting board.`,
    );
  }
  const h = held(s);
  const carrying = h === null ? 'with nothing in hand' : `carrying ${itemPhrase(s, h)}`;
  let where: string;
  if (inFrontOfBoard(s, 0)) where = 'in front of the first cutting board';
  else if (inFrontOfBoard(s, 1)) where = 'in front of the second cutting board';
  else if (isAdjacent(s.agent, s.geometry.serving)) where = 'next to the serving counter';
  else where = `in the kitchen at row ${s.agent.r}, column ${s.agent.c}`;
  sentences.push(`You are standing ${where}, ${carrying}.`);
  return sentences.join(' ');
}

/** Deep copy (for planners and tests). */
export function cloneState(s: KitchenState): KitchenState {
  const places = {} as Record<Item, Place>;
  for (const [k, p] of Object.entries(s.places) as [Item, Place][]) {
    places[k] = p.kind === 'counter' ? { kind: 'counter', cell: { ...p.cell } } : { ...p };
  }
  return {
    geometry: s.geometry,
    recipe: s.recipe,
    agent: { ...s.agent },
    places,
    chopped: { ...s.chopped },
    paidChop: new Set(s.paidChop),
    paidBowl: new Set(s.paidBowl),
    won: s.won,
  };
}

export { sameCell };
