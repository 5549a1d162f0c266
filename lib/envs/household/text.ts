/**
 * Text rendering in ALFWorld's words (its TextWorld grammar, alfred.twl2): list phrasing,
 * receptacle and object descriptions, look, inventory, help, and the intro.
 */
import { Item, Receptacle, World } from './world';
import { goalSentence } from './tasks';

export const NOTHING_HAPPENS = 'Nothing happens.';
export const WELCOME = '-= Welcome to TextWorld, ALFRED! =-';

/** TextWorld list phrasing: "nothing", "a x", "a x, and a y", "a x, a y, and a z" (ALFWorld always writes "a"). */
export function listPhrase(names: readonly string[]): string {
  const n = names.length;
  if (n === 0) return 'nothing';
  if (n === 1) return `a ${names[0]}`;
  let s = '';
  for (let i = 0; i < n; i++) {
    if (i > 0) s += i === n - 1 ? ', and ' : ', ';
    s += 'a ';
    s += names[i];
  }
  return s;
}

function contentsPhrase(w: World, r: Receptacle): string {
  const c = r.contents;
  if (c.length === 0) return 'nothing';
  const names = new Array<string>(c.length);
  for (let i = 0; i < c.length; i++) names[i] = w.items[c[i]].name;
  return listPhrase(names);
}

/** examineReceptacle feedback (also the tail of "You arrive at ..." and "You open ..."). */
export function describeReceptacle(w: World, r: Receptacle): string {
  if (r.openable) {
    if (r.isOpen) return `The ${r.name} is open. In it, you see ${contentsPhrase(w, r)}.`;
    return `The ${r.name} is closed.`;
  }
  return `On the ${r.name}, you see ${contentsPhrase(w, r)}.`;
}

/** examineObject feedback, conditions in the grammar's order. */
export function describeItem(o: Item): string {
  const n = o.name;
  const { isClean: c, isHot: h, isCool: k, isSliced: s } = o;
  if (c && h && s) return `This is a hot and clean sliced ${n}.`;
  if (c && k && s) return `This is a cool and clean sliced ${n}.`;
  if (c && s) return `This is a clean sliced ${n}.`;
  if (h && s) return `This is a hot sliced ${n}.`;
  if (k && s) return `This is a cool sliced ${n}.`;
  if (c && h) return `This is a hot and clean ${n}.`;
  if (c && k) return `This is a cool and clean ${n}.`;
  if (h) return `This is a hot ${n}.`;
  if (c) return `This is a clean ${n}.`;
  if (k) return `This is a cold ${n}.`;
  if (o.toggleable) return o.isOn ? `This ${n} is on.` : `This ${n} is off.`;
  if (s) return `This is a sliced ${n}.`;
  return `There's nothing special about ${n}.`;
}

export function lookText(w: World): string {
  if (w.agentAt < 0) {
    const names = w.listingOrder.map((id) => w.receptacles[id].name);
    return `You are in the middle of a room. Looking quickly around you, you see ${listPhrase(names)}.`;
  }
  return `You are facing the ${w.receptacles[w.agentAt].name}. Next to it, you see nothing.`;
}

export function inventoryText(w: World): string {
  if (w.holding < 0) return 'You are not carrying anything.';
  return `You are carrying: a ${w.items[w.holding].name}.`;
}

export function taskText(w: World): string {
  return `Your task is to: ${goalSentence(w.spec.goal, w.spec.variant)}`;
}

export function introText(w: World): string {
  return `${WELCOME}\n\n${lookText(w)}\n\n${taskText(w)}`;
}

export const HELP_TEXT =
  '\nAvailable commands:\n' +
  '  look:                             look around your current location\n' +
  '  inventory:                        check your current inventory\n' +
  '  go to (receptacle):               move to a receptacle\n' +
  '  open (receptacle):                open a receptacle\n' +
  '  close (receptacle):               close a receptacle\n' +
  '  take (object) from (receptacle):  take an object from a receptacle\n' +
  '  move (object) to (receptacle):    place an object in or on a receptacle\n' +
  '  examine (something):              examine a receptacle or an object\n' +
  '  use (object):                     use an object\n' +
  '  heat (object) with (receptacle):  heat an object using a receptacle\n' +
  '  clean (object) with (receptacle): clean an object using a receptacle\n' +
  '  cool (object) with (receptacle):  cool an object using a receptacle\n' +
  '  slice (object) with (object):     slice an object using a sharp object\n';

/**
 * The command grammar a household world speaks. ALFWorld 0.4 places an object with
 * "move O to R" ("You move the O to the R."); ALFWorld 0.3.x, which most published ALFWorld
 * numbers use (ReAct, Reflexion, ...), with "put O in/on R" ("You put the O in/on the R.").
 * Everything else is the same. The world and its parser speak 0.4 (and accept both spellings);
 * the environment translates what it shows the agent.
 */
export type Grammar = '0.3' | '0.4';
export const GRAMMARS: readonly Grammar[] = ['0.3', '0.4'];

const MOVE_CMD = /^move (.+) to (.+)$/;
const MOVE_FEEDBACK = /^You move the (.+) to the (.+)\.$/;
const HELP_MOVE = '  move (object) to (receptacle):    place an object in or on a receptacle\n';
const HELP_PUT = '  put (object) in/on (receptacle):  put an object in or on a receptacle\n';

/** A command of the 0.4 grammar in `grammar` (only the placing command differs). */
export function commandIn(grammar: Grammar, cmd: string): string {
  if (grammar === '0.4') return cmd;
  const m = MOVE_CMD.exec(cmd);
  return m ? `put ${m[1]} in/on ${m[2]}` : cmd;
}

/** Feedback of the 0.4 grammar in `grammar` (the placing feedback and the help text differ). */
export function feedbackIn(grammar: Grammar, text: string): string {
  if (grammar === '0.4') return text;
  if (text === HELP_TEXT) return HELP_TEXT.replace(HELP_MOVE, HELP_PUT);
  const m = MOVE_FEEDBACK.exec(text);
  return m ? `You put the ${m[1]} in/on the ${m[2]}.` : text;
}
