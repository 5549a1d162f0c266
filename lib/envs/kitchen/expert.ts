/**
 * Expert planner for the kitchen: a state-based rule policy that reaches a correct delivery
 * from any reachable state (not only from the start), so it can take over mid-episode.
 *
 * Priorities: clear wrong ingredients out of the bowl; chop every recipe ingredient on a
 * board; bring unchopped recipe ingredients to a free board (freeing a board when both are
 * busy); then gather the chopped ingredients in the bowl and serve.
 */
import { INGREDIENTS, type Ingredient } from './layout';
import { type KitchenState, admissibleActions, bowlContents, held, inFrontOfBoard, onBoard } from './world';

const BOARD_NAMES = ['first', 'second'] as const;

export function expertAction(s: KitchenState): string | undefined {
  if (s.won) return undefined;
  const recipe = s.recipe.ingredients;
  const inRecipe = (i: Ingredient) => recipe.includes(i);
  const contents = bowlContents(s);
  const strays = contents.filter((i) => !inRecipe(i));
  const h = held(s);
  const freeBoard = ([0, 1] as const).find((b) => onBoard(s, b) === null);
  const onTable = (i: Ingredient) => s.places[i].kind === 'counter' || s.places[i].kind === 'board';

  const choose = (action: string): string => {
    // Guard: the planner only ever proposes admissible actions.
    if (!admissibleActions(s).includes(action)) throw new Error(`kitchen expert: proposed inadmissible '${action}'`);
    return action;
  };

  if (h === 'bowl') {
    if (strays.length > 0) return choose('put the bowl on the counter');
    const missingChopped = recipe.find((i) => !contents.includes(i) && s.chopped[i] && onTable(i));
    if (missingChopped) return choose(`put the ${missingChopped} in the bowl`);
    if (recipe.every((i) => contents.includes(i))) return choose('serve the dish');
    return choose('put the bowl on the counter');
  }

  if (h !== null) {
    if (!inRecipe(h)) return choose(`put the ${h} on the counter`);
    if (s.chopped[h]) return choose(`put the ${h} in the bowl`);
    if (freeBoard !== undefined) return choose(`put the ${h} on the ${BOARD_NAMES[freeBoard]} cutting board`);
    return choose(`put the ${h} on the counter`);
  }

  // Hands empty.
  if (strays.length > 0) return choose(`take the ${strays[0]} out of the bowl`);
  for (const b of [0, 1] as const) {
    const item = onBoard(s, b);
    if (item && item !== 'bowl' && inRecipe(item) && !s.chopped[item]) {
      return choose(inFrontOfBoard(s, b) ? `chop the ${item}` : `walk to the ${BOARD_NAMES[b]} cutting board`);
    }
  }
  const unchopped = INGREDIENTS.find((i) => inRecipe(i) && !s.chopped[i] && s.places[i].kind === 'counter');
  if (unchopped) {
    if (freeBoard !== undefined) return choose(`pick up the ${unchopped}`);
    // Both boards busy with things that are not unchopped recipe ingredients: clear the first.
    const item = onBoard(s, 0)!;
    return choose(item === 'bowl' ? (bowlContents(s).length === 0 ? 'take the empty bowl' : 'take the bowl') : `pick up the ${item}`);
  }
  return choose(contents.length === 0 ? 'take the empty bowl' : 'take the bowl');
}
