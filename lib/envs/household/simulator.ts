/**
 * Command parser and simulator: ALFWorld's command grammar with the preconditions of its PDDL
 * domain (alfred.pddl), the admissible-command list, and the goal test.
 *
 * Invariant (tested): a command is accepted (changes nothing into "Nothing happens.") exactly when
 * it is in `admissibleActions(w)`, apart from harmless spelling variants the parser also accepts
 * ("put O in/on R" for "move O to R", extra spaces, capitals).
 */
import { SHARP, TOOLS_FOR, canContain } from './data';
import { taskVerb } from './tasks';
import {
  HELP_TEXT,
  NOTHING_HAPPENS,
  describeItem,
  describeReceptacle,
  inventoryText,
  lookText,
} from './text';
import { HELD, Item, NOTHING, Receptacle, World, insertContent, removeContent, roomIndex } from './world';

// ---------------------------------------------------------------------------------------------
// Preconditions (one function per PDDL action, shared by the simulator and the admissible list)

/** Receptacle is open if openable: contents visible and reachable. */
function accessible(r: Receptacle): boolean {
  return !r.openable || r.isOpen;
}

/** The receptacle the agent stands at, if any. */
function here(w: World): Receptacle | undefined {
  return w.agentAt >= 0 ? w.receptacles[w.agentAt] : undefined;
}

/** examineObject: held, or inside an accessible receptacle at the agent's location. */
function canExamineItem(w: World, o: Item): boolean {
  if (o.loc === HELD) return true;
  return o.loc === w.agentAt && accessible(w.receptacles[o.loc]);
}

/** ToggleObject: toggleable and inside a receptacle at the agent's location (PDDL does not ask it to be open). */
function canUse(w: World, o: Item): boolean {
  return o.toggleable && o.loc >= 0 && o.loc === w.agentAt;
}

function canTake(w: World, o: Item, r: Receptacle): boolean {
  return o.pickupable && w.holding === NOTHING && o.loc === r.id && w.agentAt === r.id && accessible(r);
}

function canMove(w: World, o: Item, r: Receptacle): boolean {
  return w.holding === o.id && w.agentAt === r.id && accessible(r) && canContain(r.type, o.type);
}

function canProcess(w: World, verb: 'heat' | 'cool' | 'clean', o: Item, r: Receptacle): boolean {
  if (w.holding !== o.id || w.agentAt !== r.id || !TOOLS_FOR[verb].has(r.type)) return false;
  return verb === 'heat' ? o.heatable : verb === 'cool' ? o.coolable : o.cleanable;
}

/** SliceObject: a sharp object in hand, the sliceable object within reach at this location. */
function canSlice(w: World, co: Item, ko: Item): boolean {
  if (w.holding !== ko.id || !SHARP.has(ko.type) || !co.sliceable || co.id === ko.id) return false;
  return co.loc >= 0 && co.loc === w.agentAt && accessible(w.receptacles[co.loc]);
}

// ---------------------------------------------------------------------------------------------
// Commands

function normalise(raw: string): string {
  let s = raw.trim().toLowerCase();
  if (s.indexOf('  ') >= 0 || s.indexOf('\t') >= 0 || s.indexOf('\n') >= 0) s = s.replace(/\s+/g, ' ');
  if (s.endsWith('.')) s = s.slice(0, -1).trimEnd();
  return s;
}

/** Split "a SEP b" into [a, b]; undefined if SEP is absent or either side is empty. */
function split2(s: string, sep: string): [string, string] | undefined {
  const i = s.indexOf(sep);
  if (i <= 0) return undefined;
  const a = s.slice(0, i);
  const b = s.slice(i + sep.length);
  return b.length ? [a, b] : undefined;
}

function rec(w: World, name: string): Receptacle | undefined {
  const id = w.recByName.get(name);
  return id === undefined ? undefined : w.receptacles[id];
}

function item(w: World, name: string): Item | undefined {
  const id = w.itemByName.get(name);
  return id === undefined ? undefined : w.items[id];
}

function put(w: World, o: Item, r: Receptacle): string | undefined {
  if (!canMove(w, o, r)) return undefined;
  w.holding = NOTHING;
  o.loc = r.id;
  insertContent(w, r, o.id);
  w.version++;
  return `You move the ${o.name} to the ${r.name}.`;
}

/**
 * Apply one command to the world. Returns the feedback text, or undefined when the command is
 * not valid in this state (the caller answers "Nothing happens.").
 */
export function applyCommand(w: World, raw: string): string | undefined {
  const s = normalise(raw);
  switch (s) {
    case 'look':
      return lookText(w);
    case 'inventory':
      return inventoryText(w);
    case 'help':
      return HELP_TEXT;
  }
  const sp = s.indexOf(' ');
  if (sp < 0) return undefined;
  const verb = s.slice(0, sp);
  const rest = s.slice(sp + 1);
  switch (verb) {
    case 'go': {
      if (!rest.startsWith('to ')) return undefined;
      const r = rec(w, rest.slice(3));
      if (!r || r.id === w.agentAt) return undefined;
      w.agentAt = r.id;
      if (accessible(r)) w.observed[r.id] = 1;
      w.version++;
      return `You arrive at ${r.name}. ${describeReceptacle(w, r)}`;
    }
    case 'open': {
      const r = rec(w, rest);
      if (!r || !r.openable || r.isOpen || w.agentAt !== r.id) return undefined;
      r.isOpen = true;
      w.observed[r.id] = 1;
      w.version++;
      return `You open the ${r.name}. ${describeReceptacle(w, r)}`;
    }
    case 'close': {
      const r = rec(w, rest);
      if (!r || !r.openable || !r.isOpen || w.agentAt !== r.id) return undefined;
      r.isOpen = false;
      w.version++;
      return `You close the ${r.name}.`;
    }
    case 'take': {
      const p = split2(rest, ' from ');
      if (!p) return undefined;
      const o = item(w, p[0]);
      const r = rec(w, p[1]);
      if (!o || !r || !canTake(w, o, r)) return undefined;
      removeContent(r, o.id);
      o.loc = HELD;
      w.holding = o.id;
      w.version++;
      return `You pick up the ${o.name} from the ${r.name}.`;
    }
    case 'move': {
      const p = split2(rest, ' to ');
      if (!p) return undefined;
      const o = item(w, p[0]);
      const r = rec(w, p[1]);
      return o && r ? put(w, o, r) : undefined;
    }
    case 'put': {
      // ALFWorld < 0.4 spelling: "put O in/on R", "put O in R", "put O on R".
      const p = split2(rest, ' in/on ') ?? split2(rest, ' in ') ?? split2(rest, ' on ');
      if (!p) return undefined;
      const o = item(w, p[0]);
      const r = rec(w, p[1]);
      return o && r ? put(w, o, r) : undefined;
    }
    case 'examine': {
      const r = rec(w, rest);
      if (r) return w.agentAt === r.id ? describeReceptacle(w, r) : undefined;
      const o = item(w, rest);
      if (o && canExamineItem(w, o)) return describeItem(o);
      return undefined;
    }
    case 'use': {
      const o = item(w, rest);
      if (!o || !canUse(w, o)) return undefined;
      o.isOn = !o.isOn;
      w.version++;
      return o.isOn ? `You turn on the ${o.name}.` : `You turn off the ${o.name}.`;
    }
    case 'heat':
    case 'cool':
    case 'clean': {
      const p = split2(rest, ' with ');
      if (!p) return undefined;
      const o = item(w, p[0]);
      const r = rec(w, p[1]);
      if (!o || !r || !canProcess(w, verb, o, r)) return undefined;
      if (verb === 'heat') {
        o.isHot = true;
        o.isCool = false;
        w.version++;
        return `You heat the ${o.name} using the ${r.name}.`;
      }
      if (verb === 'cool') {
        o.isCool = true;
        o.isHot = false;
        w.version++;
        return `You cool the ${o.name} using the ${r.name}.`;
      }
      o.isClean = true;
      w.version++;
      return `You clean the ${o.name} using the ${r.name}.`;
    }
    case 'slice': {
      const p = split2(rest, ' with ');
      if (!p) return undefined;
      const co = item(w, p[0]);
      const ko = item(w, p[1]);
      if (!co || !ko || !canSlice(w, co, ko)) return undefined;
      co.isSliced = true;
      w.version++;
      return `You sliced the ${co.name} with the ${ko.name}.`;
    }
  }
  return undefined;
}

/** Feedback for a command, "Nothing happens." when it is not valid. */
export function stepWorld(w: World, raw: string): { feedback: string; valid: boolean } {
  const f = applyCommand(w, raw);
  return f === undefined ? { feedback: NOTHING_HAPPENS, valid: false } : { feedback: f, valid: true };
}

// ---------------------------------------------------------------------------------------------
// Admissible commands

/**
 * All commands valid in the current state, sorted by UTF-16 code units (as TextWorld sorts them):
 * look, inventory, help, go to every other receptacle, and what the agent can do here and with
 * what it holds. The long "go to" list is pre-sorted per room and merged with the short rest.
 */
export function admissibleActions(w: World): string[] {
  const local: string[] = ['help', 'inventory', 'look'];
  const held = w.holding >= 0 ? w.items[w.holding] : undefined;
  if (held) local.push(`examine ${held.name}`);
  const r = here(w);
  if (r) {
    local.push(`examine ${r.name}`);
    if (r.openable) local.push(r.isOpen ? `close ${r.name}` : `open ${r.name}`);
    const acc = accessible(r);
    for (const id of r.contents) {
      const o = w.items[id];
      if (acc) {
        local.push(`examine ${o.name}`);
        if (!held && o.pickupable) local.push(`take ${o.name} from ${r.name}`);
        if (held && SHARP.has(held.type) && o.sliceable) local.push(`slice ${o.name} with ${held.name}`);
      }
      if (o.toggleable) local.push(`use ${o.name}`);
    }
    if (held) {
      if (acc && canContain(r.type, held.type)) local.push(`move ${held.name} to ${r.name}`);
      if (held.heatable && TOOLS_FOR.heat.has(r.type)) local.push(`heat ${held.name} with ${r.name}`);
      if (held.coolable && TOOLS_FOR.cool.has(r.type)) local.push(`cool ${held.name} with ${r.name}`);
      if (held.cleanable && TOOLS_FOR.clean.has(r.type)) local.push(`clean ${held.name} with ${r.name}`);
    }
  }
  local.sort();
  const goTo = roomIndex(w.spec.room).goToSorted;
  const out = new Array<string>(local.length + goTo.length - (w.agentAt >= 0 ? 1 : 0));
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < local.length || j < goTo.length) {
    if (j < goTo.length && goTo[j][0] === w.agentAt) {
      j++;
      continue;
    }
    if (j >= goTo.length || (i < local.length && local[i] < goTo[j][1])) out[k++] = local[i++];
    else out[k++] = goTo[j++][1];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Goal test (ALFWorld's PDDL goals)

/** Objects of the goal type inside receptacle r that satisfy the task's state condition. */
export function goalCountIn(w: World, r: Receptacle): number {
  const { goal } = w.spec;
  const verb = taskVerb(goal.type);
  let n = 0;
  for (const id of r.contents) {
    const o = w.items[id];
    if (o.type !== goal.object) continue;
    if (verb === 'heat' && !o.isHot) continue;
    if (verb === 'cool' && !o.isCool) continue;
    if (verb === 'clean' && !o.isClean) continue;
    n++;
  }
  return n;
}

/**
 * pick/clean/heat/cool: some receptacle of the target type holds an object of the goal type in
 * the required state; pick_two: one such receptacle holds two distinct ones; look_at: the agent
 * holds an object of the goal type at the location of a lamp of the target type that is on.
 */
export function isGoalMet(w: World): boolean {
  const { goal } = w.spec;
  if (goal.type === 'look_at_obj_in_light') {
    if (w.holding < 0 || w.items[w.holding].type !== goal.object || w.agentAt < 0) return false;
    for (const id of w.receptacles[w.agentAt].contents) {
      const o = w.items[id];
      if (o.type === goal.target && o.isOn) return true;
    }
    return false;
  }
  const need = goal.type === 'pick_two_obj_and_place' ? 2 : 1;
  for (const r of w.receptacles) {
    if (r.type === goal.target && goalCountIn(w, r) >= need) return true;
  }
  return false;
}
