/**
 * The six ALFWorld task types: their ids, the scene kinds they occur in (ALFRED's GOALS_VALID),
 * which objects qualify, their goal sentences, and the seen/unseen partition of goal pairs.
 */
import { hashString } from '../rng';
import { CLEANABLE, COOLABLE, HEATABLE, SceneKind, TOOL_FOR } from './data';

export type TaskType =
  | 'pick_and_place'
  | 'look_at_obj_in_light'
  | 'pick_clean_then_place'
  | 'pick_heat_then_place'
  | 'pick_cool_then_place'
  | 'pick_two_obj_and_place';

export const TASK_TYPES: readonly TaskType[] = [
  'pick_and_place',
  'look_at_obj_in_light',
  'pick_clean_then_place',
  'pick_heat_then_place',
  'pick_cool_then_place',
  'pick_two_obj_and_place',
];

/** ALFWorld's own (long) names for the task types, as in its game folders. */
export const ALFWORLD_TASK_NAMES: Readonly<Record<TaskType, string>> = {
  pick_and_place: 'pick_and_place_simple',
  look_at_obj_in_light: 'look_at_obj_in_light',
  pick_clean_then_place: 'pick_clean_then_place_in_recep',
  pick_heat_then_place: 'pick_heat_then_place_in_recep',
  pick_cool_then_place: 'pick_cool_then_place_in_recep',
  pick_two_obj_and_place: 'pick_two_obj_and_place',
};

/** Accept both the short ids and ALFWorld's long names. */
export function parseTaskType(s: string): TaskType | undefined {
  const t = s.trim().toLowerCase();
  for (const tt of TASK_TYPES) if (tt === t || ALFWORLD_TASK_NAMES[tt] === t) return tt;
  return undefined;
}

/** Scene kinds each task type occurs in (ALFRED constants.GOALS_VALID). */
export const TASK_SCENES: Readonly<Record<TaskType, readonly SceneKind[]>> = {
  pick_and_place: ['kitchen', 'livingroom', 'bathroom', 'bedroom'],
  pick_two_obj_and_place: ['kitchen', 'livingroom', 'bathroom', 'bedroom'],
  look_at_obj_in_light: ['livingroom', 'bedroom'],
  pick_clean_then_place: ['kitchen', 'bathroom'],
  pick_heat_then_place: ['kitchen'],
  pick_cool_then_place: ['kitchen'],
};

/** The state change a task needs before placing, if any. */
export function taskVerb(t: TaskType): 'heat' | 'cool' | 'clean' | undefined {
  if (t === 'pick_heat_then_place') return 'heat';
  if (t === 'pick_cool_then_place') return 'cool';
  if (t === 'pick_clean_then_place') return 'clean';
  return undefined;
}

/** Receptacle type the task's verb needs (microwave / fridge / sinkbasin). */
export function taskTool(t: TaskType): string | undefined {
  const v = taskVerb(t);
  return v ? TOOL_FOR[v] : undefined;
}

/** Whether an object type can be the object of a task type (affordances). */
export function objectQualifies(t: TaskType, objectType: string): boolean {
  switch (t) {
    case 'pick_heat_then_place':
      return HEATABLE.has(objectType);
    case 'pick_cool_then_place':
      return COOLABLE.has(objectType);
    case 'pick_clean_then_place':
      return CLEANABLE.has(objectType);
    default:
      return true;
  }
}

export interface Goal {
  type: TaskType;
  /** Object type, e.g. 'apple'. */
  object: string;
  /** Receptacle type to place into, or for look_at_obj_in_light the lamp type. */
  target: string;
}

/**
 * ALFWorld's goal sentences, two phrasings per type (variant 0 or 1), without the
 * "Your task is to: " prefix. ALFWorld writes "a" before every noun and keeps the final period.
 */
export function goalSentence(goal: Goal, variant: number): string {
  const { object: o, target: r } = goal;
  const v = variant & 1;
  switch (goal.type) {
    case 'pick_and_place':
      return v === 0 ? `put a ${o} in ${r}.` : `put some ${o} on ${r}.`;
    case 'look_at_obj_in_light':
      return v === 0 ? `look at ${o} under the ${r}.` : `examine the ${o} with the ${r}.`;
    case 'pick_clean_then_place':
      return v === 0 ? `put a clean ${o} in ${r}.` : `clean some ${o} and put it in ${r}.`;
    case 'pick_heat_then_place':
      return v === 0 ? `put a hot ${o} in ${r}.` : `heat some ${o} and put it in ${r}.`;
    case 'pick_cool_then_place':
      return v === 0 ? `put a cool ${o} in ${r}.` : `cool some ${o} and put it in ${r}.`;
    case 'pick_two_obj_and_place':
      return v === 0 ? `put two ${o} in ${r}.` : `find two ${o} and put them in ${r}.`;
  }
}

/**
 * Split design, part 2 (goal pairs): every (object type, target type) pair — target being the
 * receptacle type, or the lamp type for look_at — is hashed into one of 5 buckets; bucket 0 holds
 * the *unseen* pairs. Train and valid_seen games only use seen pairs, valid_unseen games only
 * unseen pairs, so an unseen game's goal combination never occurs in training (for any task type).
 */
export const GOAL_PAIR_BUCKETS = 5;
export function isUnseenGoalPair(objectType: string, targetType: string): boolean {
  return hashString(`household-goal|${objectType}|${targetType}`) % GOAL_PAIR_BUCKETS === 0;
}
