import { describe, expect, it } from 'vitest';
import { HouseholdEnv } from '../../lib/envs/household/index';
import { makeEnv } from '../../lib/envs/registry';

// ALFWorld 0.3.x spelling of the placing command, written out here independently of the
// environment's own translation.
const to03 = (c: string) => c.replace(/^move (.+) to (.+)$/, 'put $1 in/on $2');

describe("household's ALFWorld grammar versions", () => {
  it("'0.3' shows 'put O in/on R' everywhere 0.4 shows 'move O to R', and plays the same games", () => {
    let placements = 0;
    for (const split of ['valid_seen', 'valid_unseen'] as const) {
      for (let g = 0; g < 40; g++) {
        const e4 = new HouseholdEnv({ split });
        const e3 = new HouseholdEnv({ split, grammar: '0.3' });
        let r4 = e4.resetSync({ gameIndex: g, split });
        let r3 = e3.resetSync({ gameIndex: g, split });
        expect(r3.observation).toBe(r4.observation);
        for (let step = 0; step < 60; step++) {
          const a4 = r4.info.admissibleActions;
          const a3 = r3.info.admissibleActions;
          expect(a3).toEqual(a4.map(to03).sort());
          expect(a3.some((c) => /^move .+ to /.test(c))).toBe(false);
          const x4 = e4.expertAction()!;
          const x3 = e3.expertAction()!;
          expect(x3).toBe(to03(x4));
          expect(a3).toContain(x3);
          const s4 = e4.stepSync(x4);
          const s3 = e3.stepSync(x3);
          const m = /^You move the (.+) to the (.+)\.$/.exec(s4.observation);
          if (m) {
            placements++;
            expect(s3.observation).toBe(`You put the ${m[1]} in/on the ${m[2]}.`);
          } else {
            expect(s3.observation).toBe(s4.observation);
          }
          expect([s3.reward, s3.terminated, s3.truncated]).toEqual([s4.reward, s4.terminated, s4.truncated]);
          r4 = s4;
          r3 = s3;
          if (s4.terminated || s4.truncated) break;
        }
        expect(r3.info.won).toBe(true);
      }
    }
    expect(placements).toBeGreaterThan(80);
  });

  it('help text and either spelling as a command', () => {
    const e3 = new HouseholdEnv({ grammar: '0.3' });
    e3.resetSync({ seed: 5 });
    const help = e3.stepSync('help').observation;
    expect(help).toMatch(/put \(object\) in\/on \(receptacle\)/);
    expect(help).not.toMatch(/move \(object\) to/);
    const e4 = new HouseholdEnv();
    e4.resetSync({ seed: 5 });
    expect(e4.stepSync('help').observation).toMatch(/move \(object\) to \(receptacle\)/);
  });

  it('refuses an unknown grammar naming the option; makeEnv passes it through', () => {
    expect(() => new HouseholdEnv({ grammar: '0.5' as never })).toThrow(TypeError);
    expect(() => new HouseholdEnv({ grammar: '0.5' as never })).toThrow(/grammar must be '0.3' or '0.4'/);
    const env = makeEnv('household', { grammar: '0.3' }) as HouseholdEnv;
    expect(env.grammar).toBe('0.3');
  });
});
