import { describe, expect, it } from 'vitest';
import { EnvRng, deriveSeed, hashString } from '../../lib/envs/rng';
import {
  ALFWORLD_TASK_NAMES,
  EVAL_SET_SIZE,
  HouseholdEnv,
  NOTHING_HAPPENS,
  TASK_TYPES,
  admissibleActions,
  allRooms,
  applyCommand,
  evalGameSpec,
  evalSetTypes,
  expertActionFor,
  isGoalMet,
  isUnseenGoalPair,
  makeHousehold,
  trainGameSpec,
  worldFromSpec,
} from '../../lib/envs/household';
import type { GameSpec, World } from '../../lib/envs/household';
import { ALFWORLD_TYPE_COUNTS } from '../../lib/envs/household/splits';
import { SCENE_OBJECTS, canContain } from '../../lib/envs/household/data';

type Split = 'train' | 'valid_seen' | 'valid_unseen';
const SPLITS: Split[] = ['train', 'valid_seen', 'valid_unseen'];

/** Run the expert from the current state; returns whether it won and checks every action on the way. */
function runExpert(env: HouseholdEnv, startInfo: { admissibleActions: readonly string[] }): { won: boolean; steps: number } {
  let admissible = startInfo.admissibleActions;
  let steps = 0;
  for (;;) {
    const a = env.expertAction();
    if (a === undefined) return { won: env.state && isGoalMet(env.state), steps };
    // Plain checks in the hot loop (expect() per step is slow); expect() only to report a failure.
    if (!admissible.includes(a)) expect(admissible, `expert action '${a}' not admissible in ${env.state.spec.id}`).toContain(a);
    const r = env.stepSync(a);
    steps++;
    if (r.observation === NOTHING_HAPPENS) expect(r.observation, `expert action '${a}' rejected in ${env.state.spec.id}`).not.toBe(NOTHING_HAPPENS);
    if (r.terminated) return { won: true, steps };
    if (r.truncated) return { won: false, steps };
    admissible = r.info.admissibleActions;
  }
}

/** Every command of the grammar over the world's names (to check accepted <=> admissible). */
function allGrammarCommands(w: World): string[] {
  const R = w.receptacles.map((r) => r.name);
  const O = w.items.map((o) => o.name);
  const out = ['look', 'inventory', 'help'];
  for (const r of R) out.push(`go to ${r}`, `open ${r}`, `close ${r}`, `examine ${r}`);
  for (const o of O) {
    out.push(`examine ${o}`, `use ${o}`);
    for (const r of R) out.push(`take ${o} from ${r}`, `move ${o} to ${r}`, `heat ${o} with ${r}`, `cool ${o} with ${r}`, `clean ${o} with ${r}`);
    for (const k of O) out.push(`slice ${o} with ${k}`);
  }
  return out;
}

function cloneWorld(w: World): World {
  return structuredClone(w);
}

describe('rng', () => {
  it('is deterministic, in range, and seed-sensitive', () => {
    const a = new EnvRng(42);
    const b = new EnvRng(42);
    const c = new EnvRng(43);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b.next()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(Array.from({ length: 10 }, () => c.next())).not.toEqual(xs.slice(0, 10));
    const counts = new Array(10).fill(0);
    const r = new EnvRng(7);
    for (let i = 0; i < 100000; i++) counts[r.int(10)]++;
    for (const n of counts) expect(Math.abs(n - 10000)).toBeLessThan(600);
    const s = new EnvRng(1).shuffle([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...s].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(() => new EnvRng(1).pick([])).toThrow();
    expect(new EnvRng(2 ** 40 + 3).next()).not.toBe(new EnvRng(3).next());
    expect(hashString('abc')).toBe(hashString('abc'));
    expect(deriveSeed(1, 'a')).not.toBe(deriveSeed(1, 'b'));
  });
});

describe('household: ALFWorld text', () => {
  it('intro has the ALFWorld shape and lists receptacles by type, higher numbers first', async () => {
    const env = makeHousehold();
    const { observation, info } = await env.reset({ seed: 3, split: 'valid_seen' });
    const m = /^-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room\. Looking quickly around you, you see (.*)\.\n\nYour task is to: (.*)$/.exec(observation);
    expect(m, observation).not.toBeNull();
    expect(m![2]).toBe(info.task);
    const names = m![1].replace(', and ', ', ').split(', ').map((s) => s.replace(/^a /, ''));
    const sorted = [...names].sort((x, y) => {
      const [tx, nx] = x.split(' ');
      const [ty, ny] = y.split(' ');
      return tx === ty ? Number(ny) - Number(nx) : tx < ty ? -1 : 1;
    });
    expect(names).toEqual(sorted);
    // Every receptacle can be visited.
    for (const n of names) expect(info.admissibleActions).toContain(`go to ${n}`);
    for (const a of ['look', 'inventory', 'help']) expect(info.admissibleActions).toContain(a);
    expect([...info.admissibleActions]).toEqual([...info.admissibleActions].sort());
  });

  it('goal sentences follow ALFWorld templates for every task type', () => {
    const patterns: Record<string, RegExp[]> = {
      pick_and_place: [/^put a (\w+) in (\w+)\.$/, /^put some (\w+) on (\w+)\.$/],
      look_at_obj_in_light: [/^look at (\w+) under the (desklamp|floorlamp)\.$/, /^examine the (\w+) with the (desklamp|floorlamp)\.$/],
      pick_clean_then_place: [/^put a clean (\w+) in (\w+)\.$/, /^clean some (\w+) and put it in (\w+)\.$/],
      pick_heat_then_place: [/^put a hot (\w+) in (\w+)\.$/, /^heat some (\w+) and put it in (\w+)\.$/],
      pick_cool_then_place: [/^put a cool (\w+) in (\w+)\.$/, /^cool some (\w+) and put it in (\w+)\.$/],
      pick_two_obj_and_place: [/^put two (\w+) in (\w+)\.$/, /^find two (\w+) and put them in (\w+)\.$/],
    };
    const env = new HouseholdEnv();
    for (const t of TASK_TYPES) {
      const variantsSeen = new Set<number>();
      for (let seed = 0; seed < 40; seed++) {
        const { info } = env.resetSync({ seed, taskType: t });
        expect(info.taskType).toBe(t);
        const i = patterns[t].findIndex((p) => p.test(info.task));
        expect(i, `${t}: '${info.task}'`).toBeGreaterThanOrEqual(0);
        variantsSeen.add(i);
        const [, obj, target] = patterns[t][i].exec(info.task)!;
        expect(obj).toBe(env.state.spec.goal.object);
        expect(target).toBe(env.state.spec.goal.target);
      }
      expect(variantsSeen.size).toBe(2);
    }
    // ALFWorld's long names are accepted too.
    expect(env.resetSync({ seed: 1, taskType: ALFWORLD_TASK_NAMES.pick_heat_then_place }).info.taskType).toBe('pick_heat_then_place');
  });

  it('closed receptacles hide their contents until opened; feedback strings are ALFWorld\'s', () => {
    const env = new HouseholdEnv({ maxSteps: 1000 });
    let checked = 0;
    for (let seed = 0; seed < 200 && checked < 20; seed++) {
      env.resetSync({ seed });
      const w = env.state;
      const r = w.receptacles.find((x) => x.openable && x.contents.length > 0);
      if (!r) continue;
      checked++;
      const items = r.contents.map((id) => w.items[id].name);
      const first = w.items[r.contents[0]];
      let s = env.stepSync(`go to ${r.name}`);
      expect(s.observation).toBe(`You arrive at ${r.name}. The ${r.name} is closed.`);
      for (const n of items) expect(s.observation).not.toContain(n);
      expect(s.info.admissibleActions.some((a) => a.startsWith('take '))).toBe(false);
      expect(env.stepSync(`take ${first.name} from ${r.name}`).observation).toBe(NOTHING_HAPPENS);
      expect(env.stepSync(`examine ${first.name}`).observation).toBe(NOTHING_HAPPENS);
      expect(env.stepSync(`examine ${r.name}`).observation).toBe(`The ${r.name} is closed.`);
      s = env.stepSync(`open ${r.name}`);
      const list = items.length === 1 ? `a ${items[0]}` : items.slice(0, -1).map((n) => `a ${n}`).join(', ') + `, and a ${items[items.length - 1]}`;
      expect(s.observation).toBe(`You open the ${r.name}. The ${r.name} is open. In it, you see ${list}.`);
      expect(s.info.admissibleActions).toContain(`take ${first.name} from ${r.name}`);
      expect(s.info.admissibleActions).toContain(`close ${r.name}`);
      expect(env.stepSync('inventory').observation).toBe('You are not carrying anything.');
      expect(env.stepSync(`take ${first.name} from ${r.name}`).observation).toBe(`You pick up the ${first.name} from the ${r.name}.`);
      expect(env.stepSync('inventory').observation).toBe(`You are carrying: a ${first.name}.`);
      // Carrying capacity is one object.
      if (r.contents.length > 0) {
        const second = w.items[r.contents[0]];
        expect(env.stepSync(`take ${second.name} from ${r.name}`).observation).toBe(NOTHING_HAPPENS);
      }
      expect(env.stepSync(`move ${first.name} to ${r.name}`).observation).toBe(`You move the ${first.name} to the ${r.name}.`);
      expect(env.stepSync(`close ${r.name}`).observation).toBe(`You close the ${r.name}.`);
      expect(env.stepSync('look').observation).toBe(`You are facing the ${r.name}. Next to it, you see nothing.`);
    }
    expect(checked).toBe(20);
  });

  it('open receptacles list their contents with "On the X, you see ..."', () => {
    const env = new HouseholdEnv();
    env.resetSync({ seed: 11 });
    const w = env.state;
    const empty = w.receptacles.find((r) => !r.openable && r.contents.length === 0);
    const full = w.receptacles.find((r) => !r.openable && r.contents.length >= 2);
    if (full) {
      const s = env.stepSync(`go to ${full.name}`);
      expect(s.observation).toMatch(new RegExp(`^You arrive at ${full.name}\\. On the ${full.name}, you see (a [a-z]+ \\d+, )+and a [a-z]+ \\d+\\.$`));
    }
    if (empty) expect(env.stepSync(`go to ${empty.name}`).observation).toBe(`You arrive at ${empty.name}. On the ${empty.name}, you see nothing.`);
    expect(full || empty).toBeTruthy();
  });

  it('heat / cool / clean / use / slice give ALFWorld feedback and set object state', () => {
    const env = new HouseholdEnv({ maxSteps: 1000 });
    const seen = new Set<string>();
    for (let seed = 0; seed < 60 && seen.size < 4; seed++) {
      for (const t of ['pick_heat_then_place', 'pick_cool_then_place', 'pick_clean_then_place', 'look_at_obj_in_light'] as const) {
        env.resetSync({ seed, taskType: t });
        // Follow the expert until the processing action; check its feedback and the state change.
        for (;;) {
          const a = env.expertAction()!;
          const r = env.stepSync(a);
          const verb = a.split(' ')[0];
          if (['heat', 'cool', 'clean'].includes(verb)) {
            const m = /^(\w+) (\w+ \d+) with (\w+ \d+)$/.exec(a)!;
            expect(r.observation).toBe(`You ${m[1]} the ${m[2]} using the ${m[3]}.`);
            const ex = env.stepSync(`examine ${m[2]}`).observation;
            expect(ex).toBe(verb === 'heat' ? `This is a hot ${m[2]}.` : verb === 'cool' ? `This is a cold ${m[2]}.` : `This is a clean ${m[2]}.`);
            seen.add(verb);
            break;
          }
          if (verb === 'use') {
            expect(r.observation).toMatch(/^You turn on the (desklamp|floorlamp) \d+\.$/);
            seen.add('use');
            break;
          }
          if (r.terminated || r.truncated) break;
        }
      }
    }
    expect([...seen].sort()).toEqual(['clean', 'cool', 'heat', 'use']);
    // Slicing: find a game with a knife and something sliceable reachable.
    let sliced = false;
    for (let seed = 0; seed < 300 && !sliced; seed++) {
      env.resetSync({ seed, taskType: 'pick_heat_then_place' });
      const w = env.state;
      const knife = w.items.find((o) => o.type === 'knife' || o.type === 'butterknife');
      if (!knife) continue;
      const target = w.items.find((o) => o.sliceable && o.loc !== knife.loc);
      if (!target) continue;
      const kr = w.receptacles[knife.loc];
      env.stepSync(`go to ${kr.name}`);
      if (kr.openable) env.stepSync(`open ${kr.name}`);
      expect(env.stepSync(`take ${knife.name} from ${kr.name}`).observation).toContain('You pick up');
      const tr = w.receptacles[target.loc];
      env.stepSync(`go to ${tr.name}`);
      if (tr.openable) env.stepSync(`open ${tr.name}`);
      const s = env.stepSync(`slice ${target.name} with ${knife.name}`);
      expect(s.observation).toBe(`You sliced the ${target.name} with the ${knife.name}.`);
      expect(env.stepSync(`examine ${target.name}`).observation).toBe(`This is a sliced ${target.name}.`);
      sliced = true;
    }
    expect(sliced).toBe(true);
  });

  it('cleaning works in a sinkbasin or a bathtubbasin, and nowhere else', () => {
    let tested = 0;
    for (let seed = 0; seed < 400 && tested < 5; seed++) {
      const spec = trainGameSpec(seed, 'pick_clean_then_place');
      const w = worldFromSpec(spec);
      const tub = w.receptacles.find((r) => r.type === 'bathtubbasin');
      const other = w.receptacles.find((r) => !['sinkbasin', 'bathtubbasin'].includes(r.type));
      if (!tub || !other) continue;
      const o = w.items.find((x) => x.type === spec.goal.object)!;
      const src = w.receptacles[o.loc];
      src.contents.splice(src.contents.indexOf(o.id), 1);
      o.loc = -1;
      w.holding = o.id;
      w.agentAt = other.id;
      expect(applyCommand(w, `clean ${o.name} with ${other.name}`)).toBeUndefined();
      w.agentAt = tub.id;
      expect(admissibleActions(w)).toContain(`clean ${o.name} with ${tub.name}`);
      expect(applyCommand(w, `clean ${o.name} with ${tub.name}`)).toBe(`You clean the ${o.name} using the ${tub.name}.`);
      expect(o.isClean).toBe(true);
      tested++;
    }
    expect(tested).toBe(5);
  });

  it('invalid commands answer exactly "Nothing happens." and change nothing', () => {
    const env = new HouseholdEnv({ maxSteps: 1000 });
    env.resetSync({ seed: 5 });
    const w = env.state;
    const r0 = w.receptacles[0];
    const o0 = w.items.find((o) => o.pickupable)!;
    const bad = [
      '',
      '   ',
      'dance',
      'go',
      'go to',
      'go to moon 1',
      'go to cabinet 99',
      'goto ' + r0.name,
      `take ${o0.name}`,
      `take ${o0.name} from ${w.receptacles[o0.loc].name}`, // not there yet
      `move ${o0.name} to ${r0.name}`, // not holding it
      `open ${r0.name}x`,
      `examine ${o0.name}`, // not at its receptacle
      `heat ${o0.name} with microwave 1`,
      'use desklamp 1',
      'inventory please',
      'take  from ',
      'put  in ',
    ];
    for (const b of bad) {
      const v = w.version;
      const s = env.stepSync(b);
      expect(s.observation, `'${b}'`).toBe(NOTHING_HAPPENS);
      expect(s.reward).toBe(0);
      expect(w.version, `'${b}' changed the world`).toBe(v);
      expect(s.info.admissibleActions).not.toContain(b);
    }
    // Opening something that is not openable, going where you already are.
    const plain = w.receptacles.find((r) => !r.openable)!;
    env.stepSync(`go to ${plain.name}`);
    expect(env.stepSync(`open ${plain.name}`).observation).toBe(NOTHING_HAPPENS);
    expect(env.stepSync(`go to ${plain.name}`).observation).toBe(NOTHING_HAPPENS);
    // Case and spacing variants of a valid command are accepted; so is the old "put O in/on R".
    expect(env.stepSync('  LOOK ').observation).toBe(`You are facing the ${plain.name}. Next to it, you see nothing.`);
    expect(() => env.stepSync(42 as unknown as string)).toThrow(TypeError);
  });

  it('accepts "put O in/on R" (ALFWorld < 0.4) as "move O to R"', () => {
    const env = new HouseholdEnv({ maxSteps: 1000 });
    env.resetSync({ seed: 8 });
    const w = env.state;
    const o = w.items.find((x) => x.pickupable && !w.receptacles[x.loc].openable)!;
    const r = w.receptacles[o.loc];
    env.stepSync(`go to ${r.name}`);
    env.stepSync(`take ${o.name} from ${r.name}`);
    expect(env.stepSync(`put ${o.name} in/on ${r.name}`).observation).toBe(`You move the ${o.name} to the ${r.name}.`);
    env.stepSync(`take ${o.name} from ${r.name}`);
    expect(env.stepSync(`put ${o.name} on ${r.name}`).observation).toBe(`You move the ${o.name} to the ${r.name}.`);
  });
});

describe('household: admissible actions', () => {
  it('every admissible action is accepted along random walks (every step)', () => {
    const env = new HouseholdEnv({ maxSteps: 60 });
    const rng = new EnvRng(123);
    let steps = 0;
    for (let ep = 0; ep < 240; ep++) {
      const split = SPLITS[ep % 3];
      let { info } = env.resetSync(split === 'train' ? { seed: ep, split } : { seed: ep, split });
      for (;;) {
        const acts = info.admissibleActions;
        if (acts.length <= 3 || new Set(acts).size !== acts.length) throw new Error(`bad admissible list: ${acts.join('|')}`);
        const a = acts[rng.int(acts.length)];
        const r = env.stepSync(a);
        steps++;
        if (r.observation === NOTHING_HAPPENS) throw new Error(`${env.state.spec.id}: admissible '${a}' was rejected`);
        info = r.info;
        if (r.terminated || r.truncated) break;
      }
    }
    expect(steps).toBeGreaterThan(10000);
  });

  it('a grammatical command is accepted exactly when it is admissible', () => {
    const env = new HouseholdEnv({ maxSteps: 40 });
    const rng = new EnvRng(9);
    let checked = 0;
    for (let ep = 0; ep < 24; ep++) {
      let { info } = env.resetSync({ seed: 1000 + ep, taskType: TASK_TYPES[ep % 6] });
      for (let t = 0; t < 40; t++) {
        if (t % 5 === 0) {
          const w = env.state;
          const adm = new Set(admissibleActions(w));
          expect([...adm]).toEqual([...info.admissibleActions]);
          // applyCommand only mutates a world when it accepts a command, so one scratch copy
          // serves until a command is accepted.
          let scratch = cloneWorld(w);
          for (const c of allGrammarCommands(w)) {
            const accepted = applyCommand(scratch, c) !== undefined;
            if (accepted) scratch = cloneWorld(w);
            if (accepted !== adm.has(c)) throw new Error(`${w.spec.id} step ${t}: '${c}' accepted=${accepted} admissible=${adm.has(c)}`);
            checked++;
          }
        }
        // Mix expert and random moves so that states with objects in hand and open receptacles occur.
        const a = rng.chance(0.5) ? env.expertAction() ?? info.admissibleActions[0] : rng.pick(info.admissibleActions);
        const r = env.stepSync(a);
        info = r.info;
        if (r.terminated || r.truncated) break;
      }
    }
    expect(checked).toBeGreaterThan(100000);
  });
});

describe('household: expert', () => {
  it('solves every valid_seen (140) and valid_unseen (134) game', () => {
    const env = new HouseholdEnv();
    for (const split of ['valid_seen', 'valid_unseen'] as const) {
      const byType: Record<string, [number, number]> = {};
      for (let i = 0; i < EVAL_SET_SIZE[split]; i++) {
        const { info } = env.resetSync({ split, gameIndex: i });
        const { won } = runExpert(env, info);
        const t = info.taskType!;
        byType[t] ??= [0, 0];
        byType[t][0] += won ? 1 : 0;
        byType[t][1]++;
        expect(won, `${split} game ${i} (${t})`).toBe(true);
      }
      console.log(`expert ${split}:`, Object.entries(byType).map(([t, [w, n]]) => `${t} ${w}/${n}`).join(', '));
    }
  });

  it('solves >= 300 train games of every type', () => {
    const env = new HouseholdEnv();
    let total = 0;
    let stepsSum = 0;
    for (const t of TASK_TYPES) {
      for (let seed = 0; seed < 60; seed++) {
        const { info } = env.resetSync({ seed, taskType: t });
        const { won, steps } = runExpert(env, info);
        expect(won, `train seed ${seed} ${t}`).toBe(true);
        total++;
        stepsSum += steps;
      }
    }
    for (let seed = 0; seed < 300; seed++) {
      const { info } = env.resetSync({ seed });
      expect(runExpert(env, info).won, `train seed ${seed}`).toBe(true);
      total++;
    }
    expect(total).toBe(660);
    console.log(`expert train: ${total}/${total} solved, mean ${(stepsSum / 360).toFixed(1)} steps (typed runs)`);
  });

  it('recovers from arbitrary states left by a random policy', () => {
    const env = new HouseholdEnv({ maxSteps: 200 });
    const rng = new EnvRng(77);
    for (let ep = 0; ep < 150; ep++) {
      let { info } = env.resetSync({ seed: 5000 + ep, taskType: TASK_TYPES[ep % 6] });
      let over = false;
      for (let k = 0; k < 30 && !over; k++) {
        const r = env.stepSync(rng.pick(info.admissibleActions));
        info = r.info;
        over = r.terminated || r.truncated;
      }
      if (over) continue;
      expect(runExpert(env, info).won, `${env.state.spec.id}`).toBe(true);
    }
  });

  it("search mode (ALFWorld handcoded-style, sees only what it observed) solves the eval sets and >= 99% of train", () => {
    const env = new HouseholdEnv({ expert: 'search' });
    const oracle = new HouseholdEnv();
    let searchSteps = 0;
    let oracleSteps = 0;
    for (const split of ['valid_seen', 'valid_unseen'] as const) {
      for (let i = 0; i < EVAL_SET_SIZE[split]; i++) {
        const r = runExpert(env, env.resetSync({ split, gameIndex: i }).info);
        expect(r.won, `${split} game ${i} (search)`).toBe(true);
        searchSteps += r.steps;
        oracleSteps += runExpert(oracle, oracle.resetSync({ split, gameIndex: i }).info).steps;
      }
    }
    let won = 0;
    for (let seed = 0; seed < 600; seed++) won += runExpert(env, env.resetSync({ seed }).info).won ? 1 : 0;
    expect(won / 600).toBeGreaterThanOrEqual(0.99);
    // Searching costs steps: it cannot walk straight to hidden objects.
    expect(searchSteps).toBeGreaterThan(oracleSteps * 1.2);
    console.log(`search expert: eval sets 274/274, train ${won}/600; mean steps search ${(searchSteps / 274).toFixed(1)} vs oracle ${(oracleSteps / 274).toFixed(1)}`);
    expect(() => new HouseholdEnv({ expert: 'psychic' as 'oracle' })).toThrow(TypeError);
  });

  it('search mode never fetches from a receptacle it has not looked into', () => {
    const env = new HouseholdEnv({ expert: 'search' });
    for (let seed = 0; seed < 200; seed++) {
      env.resetSync({ seed });
      const w = env.state;
      for (let a = env.expertAction(); a; a = env.expertAction()) {
        const m = /^take \w+ \d+ from (\w+ \d+)$/.exec(a);
        if (m) expect(w.observed[w.recByName.get(m[1])!]).toBe(1);
        // Before the goal object is seen anywhere, going to a receptacle is exploration: it is unobserved.
        const goalSeen = w.items.some((o) => o.type === w.spec.goal.object && (o.loc < 0 || w.observed[o.loc]));
        const g = /^go to (\w+ \d+)$/.exec(a);
        if (g && !goalSeen && w.holding < 0) expect(w.observed[w.recByName.get(g[1])!]).toBe(0);
        const r = env.stepSync(a);
        if (r.terminated || r.truncated) break;
      }
    }
  });

  it('is a pure function of the world and returns undefined once the goal holds', () => {
    const env = new HouseholdEnv();
    const { info } = env.resetSync({ seed: 2, taskType: 'pick_two_obj_and_place' });
    const w = env.state;
    expect(expertActionFor(cloneWorld(w))).toBe(env.expertAction());
    runExpert(env, info);
    expect(isGoalMet(env.state)).toBe(true);
    expect(expertActionFor(env.state)).toBeUndefined();
    expect(env.expertAction()).toBeUndefined();
  });
});

describe('household: goals are checked as ALFWorld\'s PDDL goals', () => {
  it('pick_two needs two objects in the same receptacle; heat needs the object hot', () => {
    // Find a pick_two game whose target type has >= 2 instances, then split the two objects.
    let tested = false;
    for (let seed = 0; seed < 500 && !tested; seed++) {
      const spec = trainGameSpec(seed, 'pick_two_obj_and_place');
      const w = worldFromSpec(spec);
      const targets = w.receptacles.filter((r) => r.type === spec.goal.target);
      if (targets.length < 2) continue;
      const objs = w.items.filter((o) => o.type === spec.goal.object);
      expect(objs.length).toBeGreaterThanOrEqual(2);
      expect(isGoalMet(w)).toBe(false);
      const moveTo = (o: (typeof objs)[0], r: (typeof targets)[0]): void => {
        const src = w.receptacles[o.loc];
        src.contents.splice(src.contents.indexOf(o.id), 1);
        o.loc = r.id;
        r.contents.push(o.id);
      };
      moveTo(objs[0], targets[0]);
      moveTo(objs[1], targets[1]);
      expect(isGoalMet(w)).toBe(false);
      moveTo(objs[1], targets[0]);
      expect(isGoalMet(w)).toBe(true);
      tested = true;
    }
    expect(tested).toBe(true);

    const spec = trainGameSpec(4, 'pick_heat_then_place');
    const w = worldFromSpec(spec);
    const o = w.items.find((x) => x.type === spec.goal.object)!;
    const t = w.receptacles.find((r) => r.type === spec.goal.target)!;
    const src = w.receptacles[o.loc];
    src.contents.splice(src.contents.indexOf(o.id), 1);
    o.loc = t.id;
    t.contents.push(o.id);
    expect(isGoalMet(w)).toBe(false);
    o.isHot = true;
    expect(isGoalMet(w)).toBe(true);
  });

  it('look_at: holding the object where the lamp is on wins, in either order', async () => {
    const env = new HouseholdEnv({ maxSteps: 200 });
    for (let seed = 0; seed < 20; seed++) {
      await env.reset({ seed, taskType: 'look_at_obj_in_light' });
      const w = env.state;
      const lamp = w.items.find((o) => o.type === w.spec.goal.target)!;
      const lr = w.receptacles[lamp.loc];
      // Lamp first, then fetch the object: winning happens on arriving back at the lamp.
      await env.step(`go to ${lr.name}`);
      expect((await env.step(`use ${lamp.name}`)).observation).toBe(`You turn on the ${lamp.name}.`);
      expect((await env.step(`examine ${lamp.name}`)).observation).toBe(`This ${lamp.name} is on.`);
      let last;
      for (;;) {
        const a = env.expertAction();
        if (!a) break;
        expect(a.startsWith('use ')).toBe(false); // already on
        last = await env.step(a);
        if (last.terminated) break;
      }
      expect(last?.terminated).toBe(true);
      expect(last?.reward).toBe(1);
      expect(last?.info.won).toBe(true);
    }
  });
});

describe('household: episodes', () => {
  it('is deterministic: same seed and actions give identical transcripts', async () => {
    const transcript = async (seed: number, split: Split): Promise<string[]> => {
      const env = makeHousehold({ maxSteps: 30 });
      const rng = new EnvRng(seed * 7 + 1);
      const r0 = await env.reset({ seed, split });
      const out = [r0.observation, r0.info.admissibleActions.join('|')];
      let info = r0.info;
      for (;;) {
        const a = rng.pick(info.admissibleActions);
        const r = await env.step(a);
        out.push(a, r.observation, String(r.reward), r.info.admissibleActions.join('|'));
        info = r.info;
        if (r.terminated || r.truncated) break;
      }
      return out;
    };
    for (const split of SPLITS) {
      for (const seed of [0, 1, 99, 123456]) {
        expect(await transcript(seed, split)).toEqual(await transcript(seed, split));
      }
    }
    const obs = new Set<string>();
    for (let seed = 0; seed < 50; seed++) obs.add((await makeHousehold().reset({ seed })).observation);
    expect(obs.size).toBeGreaterThan(40);
  });

  it('truncates at maxSteps, rewards 1 only on success, and refuses steps after the end', async () => {
    const env = makeHousehold({ maxSteps: 5 });
    await env.reset({ seed: 1 });
    for (let i = 1; i <= 5; i++) {
      const r = await env.step('look');
      expect(r.truncated).toBe(i === 5);
      expect(r.terminated).toBe(false);
      expect(r.reward).toBe(0);
      expect(r.info.step).toBe(i);
    }
    await expect(env.step('look')).rejects.toThrow(/reset/);
    // Default limit is 50.
    const env50 = new HouseholdEnv();
    env50.resetSync({ seed: 2 });
    let n = 0;
    let r;
    do {
      r = env50.stepSync('inventory');
      n++;
    } while (!r.truncated);
    expect(n).toBe(50);
    // Success terminates with reward 1.
    const e = new HouseholdEnv();
    let { info } = e.resetSync({ seed: 3 });
    let last;
    for (let a = e.expertAction(); a; a = e.expertAction()) {
      last = e.stepSync(a);
      if (!last.terminated) expect(last.reward).toBe(0);
      info = last.info;
    }
    expect(last!.terminated).toBe(true);
    expect(last!.reward).toBe(1);
    expect(info.won).toBe(true);
    expect(() => new HouseholdEnv({ maxSteps: 0 })).toThrow();
  });

  it('validates reset options', async () => {
    const env = makeHousehold();
    await expect(env.reset({ split: 'test_unknown' })).rejects.toThrow(/split/);
    await expect(env.reset({ taskType: 'juggle' })).rejects.toThrow(/task type/);
    await expect(env.reset({ split: 'valid_seen', gameIndex: 140 })).rejects.toThrow(RangeError);
    await expect(env.reset({ split: 'train', gameIndex: 3 })).rejects.toThrow(/gameIndex/);
    expect(env.evalSetSize('train')).toBe(Infinity);
    expect(env.evalSetSize('valid_seen')).toBe(140);
    expect(env.evalSetSize('valid_unseen')).toBe(134);
    expect(env.name).toBe('household');
    expect(env.splits[0]).toBe('train');
    expect(env.taskTypes).toEqual(TASK_TYPES);
  });

  it('records random-policy success (for reference; ALFWorld random is near 0)', () => {
    const env = new HouseholdEnv();
    const rng = new EnvRng(2024);
    const rows: string[] = [];
    for (const split of SPLITS) {
      const n = split === 'train' ? 300 : EVAL_SET_SIZE[split];
      const byType: Record<string, [number, number]> = {};
      let wins = 0;
      for (let i = 0; i < n; i++) {
        let { info } = split === 'train' ? env.resetSync({ seed: i }) : env.resetSync({ split, gameIndex: i });
        const t = info.taskType!;
        byType[t] ??= [0, 0];
        byType[t][1]++;
        for (;;) {
          const r = env.stepSync(rng.pick(info.admissibleActions));
          info = r.info;
          if (r.terminated) {
            wins++;
            byType[t][0]++;
          }
          if (r.terminated || r.truncated) break;
        }
      }
      rows.push(`${split}: ${wins}/${n} (${((100 * wins) / n).toFixed(1)}%) — ${Object.entries(byType).map(([k, [w, m]]) => `${k} ${w}/${m}`).join(', ')}`);
      // A random policy must not look like a solved environment.
      expect(wins / n).toBeLessThan(0.2);
    }
    console.log(`random policy success (50 steps):\n  ${rows.join('\n  ')}`);
  });
});

describe('household: splits', () => {
  const specsOf = (split: 'valid_seen' | 'valid_unseen'): GameSpec[] =>
    Array.from({ length: EVAL_SET_SIZE[split] }, (_, i) => evalGameSpec(split, i));

  it('evaluation sets have exactly 140 / 134 games with ALFWorld\'s task-type counts, addressable by seed mod size', () => {
    for (const split of ['valid_seen', 'valid_unseen'] as const) {
      const types = evalSetTypes(split);
      expect(types.length).toBe(split === 'valid_seen' ? 140 : 134);
      TASK_TYPES.forEach((t, i) => expect(types.filter((x) => x === t).length).toBe(ALFWORLD_TYPE_COUNTS[split][i]));
      const specs = specsOf(split);
      expect(new Set(specs.map((s) => s.id)).size).toBe(specs.length);
      specs.forEach((s, i) => expect(s.taskType).toBe(types[i]));
    }
    const env = new HouseholdEnv();
    const a = env.resetSync({ split: 'valid_seen', seed: 17 }).observation;
    const b = env.resetSync({ split: 'valid_seen', seed: 17 + 140 }).observation;
    const c = env.resetSync({ split: 'valid_seen', gameIndex: 17 }).observation;
    expect(a).toBe(b);
    expect(a).toBe(c);
    expect(env.resetSync({ split: 'valid_unseen', seed: 5 }).info.gameId).toBe('valid_unseen/005');
    const r = env.resetSync({ split: 'valid_unseen', seed: 3, taskType: 'pick_cool_then_place' });
    expect(r.info.taskType).toBe('pick_cool_then_place');
  });

  it('room layouts: 30 distinct per kind, unseen rooms never used by train or valid_seen', () => {
    const rooms = allRooms();
    expect(rooms.length).toBe(120);
    expect(new Set(rooms.map((r) => r.signature)).size).toBe(120);
    const unseenSigs = new Set(rooms.filter((r) => r.unseen).map((r) => r.signature));
    expect(unseenSigs.size).toBe(24);
    const trainSigs = new Set<string>();
    for (let seed = 0; seed < 3000; seed++) {
      const s = trainGameSpec(seed);
      expect(s.room.unseen).toBe(false);
      trainSigs.add(s.room.signature);
    }
    for (const s of specsOf('valid_seen')) expect(unseenSigs.has(s.room.signature)).toBe(false);
    for (const s of specsOf('valid_unseen')) {
      expect(unseenSigs.has(s.room.signature)).toBe(true);
      expect(trainSigs.has(s.room.signature)).toBe(false);
    }
    // Train covers the seen rooms broadly.
    expect(trainSigs.size).toBeGreaterThan(80);
  });

  it('goal (object, target) pairs: unseen pairs only in valid_unseen, never in train', () => {
    const trainPairs = new Set<string>();
    for (let seed = 0; seed < 3000; seed++) {
      const { goal } = trainGameSpec(seed);
      expect(isUnseenGoalPair(goal.object, goal.target)).toBe(false);
      trainPairs.add(`${goal.object}|${goal.target}`);
    }
    for (const t of TASK_TYPES) {
      for (let seed = 0; seed < 100; seed++) expect(isUnseenGoalPair(trainGameSpec(seed, t).goal.object, trainGameSpec(seed, t).goal.target)).toBe(false);
    }
    for (const s of specsOf('valid_seen')) expect(isUnseenGoalPair(s.goal.object, s.goal.target)).toBe(false);
    const unseen = specsOf('valid_unseen');
    for (const s of unseen) {
      expect(isUnseenGoalPair(s.goal.object, s.goal.target)).toBe(true);
      expect(trainPairs.has(`${s.goal.object}|${s.goal.target}`)).toBe(false);
    }
    // Every task type has unseen games (the partition leaves each type feasible).
    for (const t of TASK_TYPES) expect(unseen.some((s) => s.taskType === t)).toBe(true);
    // The partition is a real split of the feasible pairs (roughly a fifth unseen).
    const pairs = new Set<string>();
    for (const kind of ['kitchen', 'bathroom', 'bedroom', 'livingroom'] as const) {
      for (const o of SCENE_OBJECTS[kind]) for (const r of ['countertop', 'cabinet', 'drawer', 'shelf', 'sidetable', 'fridge', 'garbagecan', 'desk', 'dresser', 'sofa', 'bed', 'toilet']) if (canContain(r, o)) pairs.add(`${o}|${r}`);
    }
    const frac = [...pairs].filter((p) => isUnseenGoalPair(...(p.split('|') as [string, string]))).length / pairs.size;
    expect(frac).toBeGreaterThan(0.1);
    expect(frac).toBeLessThan(0.3);
  });

  it('the goal is never satisfied at the start, and goal objects exist (two for pick_two)', () => {
    const check = (spec: GameSpec): void => {
      const w = worldFromSpec(spec);
      expect(isGoalMet(w)).toBe(false);
      const n = w.items.filter((o) => o.type === spec.goal.object).length;
      expect(n).toBeGreaterThanOrEqual(spec.taskType === 'pick_two_obj_and_place' ? 2 : 1);
      for (const r of w.receptacles) for (const id of r.contents) {
        const o = w.items[id];
        if (o.pickupable) expect(canContain(r.type, o.type), `${o.name} in ${r.name}`).toBe(true);
      }
    };
    for (let seed = 0; seed < 500; seed++) check(trainGameSpec(seed));
    for (const s of specsOf('valid_seen')) check(s);
    for (const s of specsOf('valid_unseen')) check(s);
  });
});
