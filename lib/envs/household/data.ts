/**
 * Static ALFRED/ALFWorld world knowledge: which receptacles occur in which scene kinds, which
 * objects can sit in which receptacles (ALFRED's VAL_RECEPTACLE_OBJECTS), and the object
 * affordances (heatable, coolable, cleanable, sliceable, toggleable). Names are the lowercase
 * forms ALFWorld prints ("sinkbasin", "desklamp").
 */

export type SceneKind = 'kitchen' | 'bathroom' | 'bedroom' | 'livingroom';
export const SCENE_KINDS: readonly SceneKind[] = ['kitchen', 'bathroom', 'bedroom', 'livingroom'];

/** Receptacles that must be opened before their contents can be seen or touched (ALFRED's openable classes). */
export const OPENABLE_RECEPTACLES: ReadonlySet<string> = new Set(['cabinet', 'drawer', 'fridge', 'microwave', 'safe']);

const TABLETOP = [
  'alarmclock', 'apple', 'baseballbat', 'basketball', 'book', 'bowl', 'box', 'bread', 'butterknife', 'candle',
  'cd', 'cellphone', 'cloth', 'creditcard', 'cup', 'dishsponge', 'glassbottle', 'egg', 'fork', 'kettle', 'keychain',
  'knife', 'ladle', 'laptop', 'lettuce', 'mug', 'newspaper', 'pan', 'papertowel', 'pen', 'pencil', 'peppershaker',
  'plate', 'pot', 'potato', 'remotecontrol', 'saltshaker', 'soapbar', 'soapbottle', 'spatula', 'spoon',
  'spraybottle', 'statue', 'tennisracket', 'tissuebox', 'toiletpaper', 'tomato', 'vase', 'watch',
  'wateringcan', 'winebottle', 'handtowel',
];
const SEATING = ['basketball', 'book', 'box', 'cellphone', 'cloth', 'creditcard', 'keychain', 'laptop', 'newspaper', 'pillow', 'remotecontrol'];

/**
 * Which object types each (static) receptacle type can contain: ALFRED's VAL_RECEPTACLE_OBJECTS restricted
 * to static receptacles (ALFWorld's text games keep movable receptacles such as bowls as plain objects).
 * ALFRED's 'ToiletPaperRoll' is folded into 'toiletpaper' (ALFWorld prints both as toiletpaper).
 */
export const CAN_CONTAIN: Readonly<Record<string, ReadonlySet<string>>> = {
  coffeemachine: new Set(['mug']),
  microwave: new Set(['apple', 'bowl', 'bread', 'cup', 'egg', 'glassbottle', 'mug', 'plate', 'potato', 'tomato']),
  stoveburner: new Set(['kettle', 'pan', 'pot']),
  fridge: new Set(['apple', 'bowl', 'bread', 'cup', 'egg', 'glassbottle', 'lettuce', 'mug', 'pan', 'plate', 'pot', 'potato', 'tomato', 'winebottle']),
  sofa: new Set(SEATING),
  armchair: new Set(SEATING),
  ottoman: new Set(SEATING),
  dresser: new Set([
    'alarmclock', 'basketball', 'book', 'bowl', 'box', 'candle', 'cd', 'cellphone', 'cloth', 'creditcard', 'cup',
    'glassbottle', 'keychain', 'laptop', 'mug', 'newspaper', 'pen', 'pencil', 'plate', 'remotecontrol', 'spraybottle',
    'statue', 'tennisracket', 'tissuebox', 'toiletpaper', 'vase', 'watch', 'wateringcan', 'winebottle',
  ]),
  laundryhamper: new Set(['cloth']),
  desk: new Set([
    'alarmclock', 'basketball', 'book', 'bowl', 'box', 'candle', 'cd', 'cellphone', 'cloth', 'creditcard', 'cup',
    'glassbottle', 'keychain', 'laptop', 'mug', 'newspaper', 'pen', 'pencil', 'plate', 'remotecontrol', 'soapbottle',
    'spraybottle', 'statue', 'tennisracket', 'tissuebox', 'toiletpaper', 'vase', 'watch', 'wateringcan', 'winebottle',
  ]),
  bed: new Set(['baseballbat', 'basketball', 'book', 'cellphone', 'laptop', 'newspaper', 'pillow', 'tennisracket']),
  toilet: new Set(['candle', 'cloth', 'dishsponge', 'newspaper', 'papertowel', 'soapbar', 'soapbottle', 'spraybottle', 'tissuebox', 'toiletpaper', 'handtowel']),
  toiletpaperhanger: new Set(['toiletpaper']),
  towelholder: new Set(['towel']),
  handtowelholder: new Set(['handtowel']),
  cart: new Set(['candle', 'cloth', 'dishsponge', 'mug', 'papertowel', 'plunger', 'soapbar', 'soapbottle', 'spraybottle', 'statue', 'tissuebox', 'toiletpaper', 'vase', 'handtowel']),
  bathtubbasin: new Set(['cloth', 'dishsponge', 'soapbar', 'handtowel']),
  sinkbasin: new Set([
    'apple', 'bowl', 'butterknife', 'cloth', 'cup', 'dishsponge', 'egg', 'glassbottle', 'fork', 'kettle', 'knife',
    'ladle', 'lettuce', 'mug', 'pan', 'plate', 'pot', 'potato', 'soapbar', 'spatula', 'spoon', 'tomato', 'handtowel',
  ]),
  cabinet: new Set([
    'book', 'bowl', 'box', 'candle', 'cd', 'cloth', 'cup', 'dishsponge', 'glassbottle', 'kettle', 'ladle', 'mug',
    'newspaper', 'pan', 'peppershaker', 'plate', 'plunger', 'pot', 'saltshaker', 'soapbar', 'soapbottle', 'spraybottle',
    'tissuebox', 'toiletpaper', 'vase', 'wateringcan', 'winebottle', 'handtowel',
  ]),
  countertop: new Set(TABLETOP),
  diningtable: new Set(TABLETOP),
  coffeetable: new Set(TABLETOP),
  sidetable: new Set(TABLETOP),
  shelf: new Set([
    'alarmclock', 'book', 'bowl', 'box', 'candle', 'cd', 'cellphone', 'cloth', 'creditcard', 'cup', 'dishsponge',
    'glassbottle', 'kettle', 'keychain', 'mug', 'newspaper', 'papertowel', 'pen', 'pencil', 'peppershaker', 'plate',
    'pot', 'remotecontrol', 'saltshaker', 'soapbar', 'soapbottle', 'spraybottle', 'statue', 'tissuebox', 'toiletpaper',
    'vase', 'watch', 'wateringcan', 'winebottle', 'handtowel',
  ]),
  drawer: new Set([
    'book', 'butterknife', 'candle', 'cd', 'cellphone', 'cloth', 'creditcard', 'dishsponge', 'fork', 'keychain', 'knife',
    'ladle', 'newspaper', 'pen', 'pencil', 'peppershaker', 'remotecontrol', 'saltshaker', 'soapbar', 'soapbottle',
    'spatula', 'spoon', 'spraybottle', 'tissuebox', 'toiletpaper', 'watch', 'wateringcan', 'handtowel',
  ]),
  garbagecan: new Set([
    'apple', 'bread', 'cd', 'cloth', 'dishsponge', 'egg', 'lettuce', 'newspaper', 'papertowel', 'pen', 'pencil',
    'potato', 'soapbar', 'soapbottle', 'spraybottle', 'tissuebox', 'toiletpaper', 'tomato', 'winebottle', 'handtowel',
  ]),
  safe: new Set(['cd', 'cellphone', 'creditcard', 'keychain', 'statue', 'vase', 'watch']),
  tvstand: new Set(['tissuebox']),
  toaster: new Set([]), // ALFRED: only sliced bread; ALFWorld's text games hold nothing there in practice.
};

/** Where lamps stand (lamps are toggleable objects that are not pickupable). */
export const LAMP_HOSTS: Readonly<Record<string, readonly string[]>> = {
  desklamp: ['desk', 'sidetable', 'dresser', 'shelf'],
  floorlamp: ['sidetable', 'dresser', 'desk', 'coffeetable', 'shelf'],
};
export const LAMP_TYPES: readonly string[] = ['desklamp', 'floorlamp'];

// ALFRED's VAL_ACTION_OBJECTS (sliced variants folded into their whole objects).
export const HEATABLE: ReadonlySet<string> = new Set(['apple', 'bread', 'cup', 'egg', 'mug', 'plate', 'potato', 'tomato']);
export const COOLABLE: ReadonlySet<string> = new Set(['apple', 'bowl', 'bread', 'cup', 'egg', 'lettuce', 'mug', 'pan', 'plate', 'pot', 'potato', 'tomato', 'winebottle']);
export const CLEANABLE: ReadonlySet<string> = new Set([
  'apple', 'bowl', 'butterknife', 'cloth', 'cup', 'dishsponge', 'egg', 'fork', 'kettle', 'knife', 'ladle', 'lettuce',
  'mug', 'pan', 'plate', 'pot', 'potato', 'soapbar', 'spatula', 'spoon', 'tomato',
]);
export const SLICEABLE: ReadonlySet<string> = new Set(['apple', 'bread', 'egg', 'lettuce', 'potato', 'tomato']);
export const TOGGLEABLE: ReadonlySet<string> = new Set(['desklamp', 'floorlamp']);
/** Objects that slice (ALFWorld's SliceObject needs a knife or butterknife in hand). */
export const SHARP: ReadonlySet<string> = new Set(['knife', 'butterknife']);

/**
 * Receptacle each processing verb needs (ALFWorld PDDL: MicrowaveType, FridgeType, SinkBasinType).
 * This is the one the expert uses; TOOLS_FOR lists every receptacle type that works.
 */
export const TOOL_FOR: Readonly<Record<'heat' | 'cool' | 'clean', string>> = {
  heat: 'microwave',
  cool: 'fridge',
  clean: 'sinkbasin',
};

/**
 * Receptacle types that can perform each verb. Cleaning also works in a bathtubbasin (ALFWorld's
 * handcoded expert falls back to the bathtubbasin when a room has no sinkbasin).
 */
export const TOOLS_FOR: Readonly<Record<'heat' | 'cool' | 'clean', ReadonlySet<string>>> = {
  heat: new Set(['microwave']),
  cool: new Set(['fridge']),
  clean: new Set(['sinkbasin', 'bathtubbasin']),
};

/** One receptacle kind in a scene: how many instances a room has (min..max), and how often it is present at all. */
export interface ReceptacleSpec {
  type: string;
  min: number;
  max: number;
  /** Probability the room has any (1 = always). */
  p: number;
}

/**
 * Per scene kind: receptacle kinds and their counts, loosely following the ALFRED FloorPlans
 * (kitchens have many cabinets and drawers, a fridge, a microwave, a sinkbasin and 4 stoveburners;
 * bedrooms a bed, drawers, shelves and a desk or dresser; ...).
 */
export const SCENE_RECEPTACLES: Readonly<Record<SceneKind, readonly ReceptacleSpec[]>> = {
  kitchen: [
    { type: 'cabinet', min: 3, max: 13, p: 1 },
    { type: 'coffeemachine', min: 1, max: 1, p: 1 },
    { type: 'countertop', min: 1, max: 3, p: 1 },
    { type: 'diningtable', min: 1, max: 1, p: 0.6 },
    { type: 'drawer', min: 1, max: 9, p: 1 },
    { type: 'fridge', min: 1, max: 1, p: 1 },
    { type: 'garbagecan', min: 1, max: 1, p: 1 },
    { type: 'microwave', min: 1, max: 1, p: 1 },
    { type: 'shelf', min: 1, max: 3, p: 0.4 },
    { type: 'sidetable', min: 1, max: 1, p: 0.2 },
    { type: 'sinkbasin', min: 1, max: 2, p: 1 },
    { type: 'stoveburner', min: 2, max: 4, p: 1 },
    { type: 'toaster', min: 1, max: 1, p: 1 },
  ],
  bathroom: [
    { type: 'bathtubbasin', min: 1, max: 1, p: 0.6 },
    { type: 'cabinet', min: 1, max: 4, p: 0.8 },
    { type: 'cart', min: 1, max: 1, p: 0.2 },
    { type: 'countertop', min: 1, max: 1, p: 1 },
    { type: 'drawer', min: 1, max: 6, p: 0.5 },
    { type: 'dresser', min: 1, max: 1, p: 0.15 },
    { type: 'garbagecan', min: 1, max: 1, p: 1 },
    { type: 'handtowelholder', min: 1, max: 2, p: 0.7 },
    { type: 'shelf', min: 1, max: 3, p: 0.4 },
    { type: 'sinkbasin', min: 1, max: 2, p: 1 },
    { type: 'toilet', min: 1, max: 1, p: 1 },
    { type: 'toiletpaperhanger', min: 1, max: 1, p: 1 },
    { type: 'towelholder', min: 1, max: 2, p: 0.8 },
  ],
  bedroom: [
    { type: 'armchair', min: 1, max: 1, p: 0.3 },
    { type: 'bed', min: 1, max: 1, p: 1 },
    { type: 'desk', min: 1, max: 2, p: 0.7 },
    { type: 'drawer', min: 2, max: 10, p: 1 },
    { type: 'dresser', min: 1, max: 1, p: 0.6 },
    { type: 'garbagecan', min: 1, max: 1, p: 1 },
    { type: 'laundryhamper', min: 1, max: 1, p: 0.4 },
    { type: 'safe', min: 1, max: 1, p: 0.3 },
    { type: 'shelf', min: 1, max: 6, p: 0.7 },
    { type: 'sidetable', min: 1, max: 2, p: 0.6 },
  ],
  livingroom: [
    { type: 'armchair', min: 1, max: 2, p: 0.7 },
    { type: 'cabinet', min: 1, max: 4, p: 0.5 },
    { type: 'coffeetable', min: 1, max: 1, p: 0.9 },
    { type: 'diningtable', min: 1, max: 1, p: 0.3 },
    { type: 'drawer', min: 1, max: 4, p: 0.6 },
    { type: 'dresser', min: 1, max: 1, p: 0.3 },
    { type: 'garbagecan', min: 1, max: 1, p: 1 },
    { type: 'ottoman', min: 1, max: 1, p: 0.3 },
    { type: 'shelf', min: 1, max: 6, p: 0.6 },
    { type: 'sidetable', min: 1, max: 2, p: 0.7 },
    { type: 'sofa', min: 1, max: 1, p: 1 },
    { type: 'tvstand', min: 1, max: 1, p: 0.5 },
  ],
};

/** Pickupable object kinds that appear in each scene kind (ALFRED scene object inventories). */
export const SCENE_OBJECTS: Readonly<Record<SceneKind, readonly string[]>> = {
  kitchen: [
    'apple', 'bowl', 'bread', 'butterknife', 'cup', 'dishsponge', 'egg', 'fork', 'glassbottle', 'kettle', 'knife',
    'ladle', 'lettuce', 'mug', 'pan', 'papertowel', 'peppershaker', 'plate', 'pot', 'potato', 'saltshaker',
    'soapbottle', 'spatula', 'spoon', 'tomato', 'winebottle', 'creditcard', 'cellphone', 'vase', 'statue',
  ],
  bathroom: [
    'candle', 'cloth', 'dishsponge', 'handtowel', 'plunger', 'soapbar', 'soapbottle', 'spraybottle', 'tissuebox',
    'toiletpaper', 'towel', 'papertowel',
  ],
  bedroom: [
    'alarmclock', 'baseballbat', 'basketball', 'book', 'bowl', 'box', 'cd', 'cellphone', 'cloth', 'creditcard',
    'keychain', 'laptop', 'mug', 'pen', 'pencil', 'pillow', 'tennisracket', 'vase', 'watch', 'statue', 'tissuebox',
  ],
  livingroom: [
    'book', 'bowl', 'box', 'candle', 'cellphone', 'creditcard', 'keychain', 'laptop', 'newspaper', 'pillow', 'plate',
    'remotecontrol', 'statue', 'tissuebox', 'vase', 'watch', 'wateringcan',
  ],
};

/** True when a receptacle of type r can hold an object of type o. */
export function canContain(r: string, o: string): boolean {
  const s = CAN_CONTAIN[r];
  return s !== undefined && s.has(o);
}
