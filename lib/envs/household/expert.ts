/**
 * Handcrafted expert, in the spirit of ALFWorld's handcoded expert: find the object, open what is
 * closed, take it, go to the appliance and process it, go to the target, open it, move the object
 * there (twice for pick_two); for look_at, take the object to the lamp and switch it on.
 *
 * It is a pure function of the current world (memoryless), so it also recovers from any state a
 * learner left behind (DAgger-style relabelling): holding the wrong thing, a lamp switched on
 * elsewhere, an object already half-way. It reads the true state (like ALFWorld's oracle, which
 * plans on the PDDL state); every action it returns is admissible (tested).
 */
import { LAMP_HOSTS, TOOL_FOR, canContain } from './data';
import { goalCountIn, isGoalMet } from './simulator';
import { taskVerb } from './tasks';
import { HELD, Item, Receptacle, World } from './world';

function goTo(r: Receptacle): string {
  return `go to ${r.name}`;
}

/** Step towards taking object o (which lies in a receptacle). */
function fetch(w: World, o: Item): string {
  const r = w.receptacles[o.loc];
  if (w.agentAt !== r.id) return goTo(r);
  if (r.openable && !r.isOpen) return `open ${r.name}`;
  return `take ${o.name} from ${r.name}`;
}

/** Step towards putting the held object into r. */
function deliver(w: World, held: Item, r: Receptacle): string {
  if (w.agentAt !== r.id) return goTo(r);
  if (r.openable && !r.isOpen) return `open ${r.name}`;
  return `move ${held.name} to ${r.name}`;
}

/** Step towards getting rid of a held object that does not serve the goal. */
function dropHeld(w: World, held: Item, avoidType: string | undefined): string {
  const cur = w.agentAt >= 0 ? w.receptacles[w.agentAt] : undefined;
  if (cur && cur.type !== avoidType && canContain(cur.type, held.type)) return deliver(w, held, cur);
  // Prefer a receptacle that needs no opening.
  let best: Receptacle | undefined;
  for (const r of w.receptacles) {
    if (r.type === avoidType || !canContain(r.type, held.type)) continue;
    if (!best || (best.openable && !r.openable)) best = r;
    if (!r.openable) break;
  }
  if (!best) throw new Error(`household expert: nowhere to put ${held.name}`);
  return deliver(w, held, best);
}

/** First receptacle of a type (lowest number). */
function firstOfType(w: World, type: string): Receptacle | undefined {
  for (const r of w.receptacles) if (r.type === type) return r;
  return undefined;
}

/** How the expert learns where things are: the true state (oracle) or only what it has seen (search). */
export type ExpertMode = 'oracle' | 'search';

/**
 * Choose an object to fetch among those the expert knows of: every object (oracle) or those in
 * receptacles already seen (search). Prefers the current receptacle, then ones needing no opening.
 */
function chooseObject(w: World, mode: ExpertMode, ok: (o: Item) => boolean): Item | undefined {
  let best: Item | undefined;
  let bestScore = Infinity;
  for (const o of w.items) {
    if (o.loc === HELD || !o.pickupable || !ok(o)) continue;
    if (mode === 'search' && !w.observed[o.loc]) continue;
    const r = w.receptacles[o.loc];
    const score = (o.loc === w.agentAt ? 0 : 2) + (r.openable && !r.isOpen ? 1 : 0);
    if (score < bestScore) {
      best = o;
      bestScore = score;
    }
  }
  return best;
}

/**
 * Next exploration step when looking for something not yet seen: open the current receptacle if
 * it is closed and unseen, else go to the most promising unseen receptacle (one that can hold the
 * thing, per ALFRED's receptacle/object lists; open-topped ones first, as they cost one step).
 */
function explore(w: World, likely: (r: Receptacle) => boolean): string | undefined {
  const cur = w.agentAt >= 0 ? w.receptacles[w.agentAt] : undefined;
  if (cur && !w.observed[cur.id] && cur.openable && !cur.isOpen && likely(cur)) return `open ${cur.name}`;
  let best: Receptacle | undefined;
  let bestScore = Infinity;
  for (const r of w.receptacles) {
    if (w.observed[r.id]) continue;
    const score = (likely(r) ? 0 : 4) + (r.openable ? 1 : 0);
    if (score < bestScore) {
      best = r;
      bestScore = score;
    }
  }
  if (!best) return undefined;
  if (best.id === w.agentAt) return best.openable && !best.isOpen ? `open ${best.name}` : undefined;
  return goTo(best);
}

/** Fetch an object satisfying `ok` (type `type`), exploring first when it is not known yet. */
function fetchOrExplore(w: World, mode: ExpertMode, type: string, ok: (o: Item) => boolean): string {
  const o = chooseObject(w, mode, ok);
  if (o) return fetch(w, o);
  const step = explore(w, (r) => canContain(r.type, type));
  if (step) return step;
  // Everything seen and nothing found: only possible if the state is not what was observed.
  const any = chooseObject(w, 'oracle', ok);
  if (!any) throw new Error(`household expert: no ${type} left to fetch in ${w.spec.id}`);
  return fetch(w, any);
}

/**
 * The expert's next command, or undefined when the goal is already met.
 *
 * mode 'oracle' (default) plans on the true state, like ALFWorld's PDDL-planner expert: shortest
 * plans, solves every game. mode 'search' knows only what the agent has seen (receptacle types
 * from the intro, contents of receptacles it has looked into) and searches like ALFWorld's
 * handcoded expert, trying the receptacles that can hold the object first: longer, more natural
 * demonstrations, which may run out of steps in large kitchens.
 */
export function expertAction(w: World, mode: ExpertMode = 'oracle'): string | undefined {
  if (isGoalMet(w)) return undefined;
  const { goal } = w.spec;
  const held = w.holding >= 0 ? w.items[w.holding] : undefined;

  if (goal.type === 'look_at_obj_in_light') {
    if (held && held.type === goal.object) {
      let lamp: Item | undefined;
      for (const o of w.items) {
        if (o.type !== goal.target || (mode === 'search' && !w.observed[o.loc])) continue;
        if (!lamp || (o.isOn && !lamp.isOn)) lamp = o;
      }
      if (!lamp) {
        const step = explore(w, (r) => LAMP_HOSTS[goal.target]?.includes(r.type) ?? false);
        if (step) return step;
        return expertAction(w, 'oracle');
      }
      const lr = w.receptacles[lamp.loc];
      if (w.agentAt !== lr.id) return goTo(lr);
      return `use ${lamp.name}`; // lamp is off here (otherwise the goal would be met)
    }
    if (held) return dropHeld(w, held, undefined);
    return fetchOrExplore(w, mode, goal.object, (x) => x.type === goal.object);
  }

  const verb = taskVerb(goal.type);
  const done = (o: Item): boolean =>
    verb === 'heat' ? o.isHot : verb === 'cool' ? o.isCool : verb === 'clean' ? o.isClean : true;
  // Target receptacle: for pick_two the one already holding a finished object, else the first of its type.
  let target: Receptacle | undefined;
  let best = -1;
  for (const r of w.receptacles) {
    if (r.type !== goal.target) continue;
    const n = goalCountIn(w, r);
    if (n > best) {
      best = n;
      target = r;
    }
  }
  if (!target) throw new Error(`household expert: no ${goal.target} in ${w.spec.id}`);

  if (held && held.type === goal.object) {
    if (!done(held)) {
      const tool = firstOfType(w, TOOL_FOR[verb!]);
      if (!tool) throw new Error(`household expert: no ${TOOL_FOR[verb!]} in ${w.spec.id}`);
      if (w.agentAt !== tool.id) return goTo(tool);
      return `${verb} ${held.name} with ${tool.name}`;
    }
    return deliver(w, held, target);
  }
  if (held) return dropHeld(w, held, goal.target);
  const tgt = target;
  // Objects already counted in the target stay there.
  return fetchOrExplore(w, mode, goal.object, (x) => x.type === goal.object && !(x.loc === tgt.id && done(x)));
}
