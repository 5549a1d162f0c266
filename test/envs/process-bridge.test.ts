/**
 * examples/alfworld_bridge.py: it must compile, and (with tiny stand-ins for the alfworld and
 * textworld packages, which are not installed here) speak the ProcessEnv protocol correctly.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessEnv } from '../../lib/envs/process';

const BRIDGE = path.join(__dirname, '..', '..', 'examples', 'alfworld_bridge.py');
const hasPython = spawnSync('python3', ['--version']).status === 0;

// Stand-ins: two games whose expert plan is "go to desk 1" then "put book 1 in/on desk 1".
const STUBS: Record<string, string> = {
  'textworld/__init__.py': `
import json
class EnvInfos:
    def __init__(self, **kw): self.kw = kw
class GameState(dict):
    @property
    def feedback(self): return self["feedback"]
class _Env:
    def __init__(self, path):
        self.path = path
        self.t = 0
        self.closed = False
    def _state(self, feedback):
        plan = ["go to desk 1", "put book 1 in/on desk 1"][self.t:]
        return GameState(feedback=feedback, admissible_commands=["look", "help", "go to desk 1", "put book 1 in/on desk 1"],
                         won=self.t >= 2, expert_plan=plan, score=1 if self.t >= 2 else 0)
    def reset(self):
        self.t = 0
        print("noise from textworld on stdout")  # must not reach the protocol
        return self._state("-= Welcome to TextWorld, ALFRED! =-\\n\\nYou are in the middle of a room.\\n\\nYour task is to: put a book in desk.")
    def step(self, cmd):
        if self.t < 2 and cmd == ["go to desk 1", "put book 1 in/on desk 1"][self.t]:
            self.t += 1
        s = self._state("You did " + cmd + ".")
        return s, s["score"], self.t >= 2
    def close(self): self.closed = True
def start(path, request_infos=None, wrappers=()):
    return _Env(path)
`,
  'alfworld/__init__.py': '',
  'alfworld/info.py': 'ALFWORLD_DATA = "/nonexistent/alfworld-data"\n',
  'alfworld/agents/__init__.py': '',
  'alfworld/agents/environment/__init__.py': '',
  'alfworld/agents/environment/alfred_tw_env.py': `
print("Initializing AlfredTWEnv...")  # ALFWorld really prints this
class AlfredDemangler:
    def __init__(self, shuffle=False): pass
class AlfredInfos: pass
class AlfredTWEnv:
    def __init__(self, config, train_eval="train"):
        assert config["dataset"]["data_path"].startswith("/nonexistent/alfworld-data")
        base = "/data/json_2.1.1/" + train_eval
        self.game_files = [base + "/pick_heat_then_place_in_recep-Book-None-Desk-1/trial_1/game.tw-pddl",
                           base + "/pick_and_place_simple-Book-None-Desk-2/trial_2/game.tw-pddl"]
`,
};

describe('examples/alfworld_bridge.py', () => {
  let stubDir = '';
  beforeAll(() => {
    stubDir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-alfstub-'));
    for (const [rel, text] of Object.entries(STUBS)) {
      fs.mkdirSync(path.dirname(path.join(stubDir, rel)), { recursive: true });
      fs.writeFileSync(path.join(stubDir, rel), text);
    }
  });
  afterAll(() => {
    if (stubDir) fs.rmSync(stubDir, { recursive: true, force: true });
  });

  it.skipIf(!hasPython)('compiles (python3 -m py_compile)', () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-pycache-'));
    try {
      // PYTHONPYCACHEPREFIX keeps the .pyc out of the source tree.
      execFileSync('python3', ['-m', 'py_compile', BRIDGE], { env: { ...process.env, PYTHONPYCACHEPREFIX: cache } });
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it.skipIf(!hasPython)('speaks the protocol: reset picks games by index/task type, steps pay the score delta', async () => {
    const env = new ProcessEnv({
      command: 'python3',
      args: [BRIDGE, '--max-steps', '5'],
      env: { ...process.env, PYTHONPATH: stubDir, PYTHONDONTWRITEBYTECODE: '1' },
      timeoutMs: 15_000,
    });
    try {
      const r0 = await env.reset({ split: 'valid_seen', gameIndex: 0, seed: 0 }); // sorted: pick_and_place first
      expect(r0.observation.startsWith('You are in the middle of a room.')).toBe(true);
      expect(r0.info.task).toBe('put a book in desk');
      expect(r0.info.taskType).toBe('pick_and_place_simple');
      expect(String(r0.info.gamefile)).toContain('eval_in_distribution');
      expect(r0.info.admissibleActions).not.toContain('help');
      expect(env.expertAction()).toBe('go to desk 1');

      const r1 = await env.step('look');
      expect(r1.reward).toBe(0);
      expect(r0.info.grammar).toBe('0.3');
      const r2 = await env.step(env.expertAction()!);
      expect(r2.terminated).toBe(false);
      // The 0.4 spelling is translated to the engine's 0.3 command.
      const r3 = await env.step('move book 1 to desk 1');
      expect(r3).toMatchObject({ reward: 1, terminated: true, truncated: false });
      expect(r3.info.won).toBe(true);
      expect(r3.info.admissibleActions).toEqual([]);

      const heat = await env.reset({ split: 'train', taskType: 'pick_heat', seed: 4 });
      expect(heat.info.taskType).toBe('pick_heat_then_place_in_recep');
      // Truncation at --max-steps 5.
      let last;
      for (let i = 0; i < 5; i++) last = await env.step('look');
      expect(last!.truncated).toBe(true);
      // Errors are answers, not crashes.
      await expect(env.step('look')).rejects.toThrow(/no episode in progress/);
      await expect(env.reset({ split: 'test' })).rejects.toThrow(/unknown split 'test'/);
      await expect(env.reset({ gameIndex: 9 })).rejects.toThrow(/gameIndex 9 outside the 2 games/);
      expect((await env.reset({ seed: 1 })).info.task).toBe('put a book in desk');
    } finally {
      await env.close();
    }
  });

  it.skipIf(!hasPython)('--grammar 0.4 against a 0.3 engine is an error naming both', async () => {
    const env = new ProcessEnv({
      command: 'python3',
      args: [BRIDGE, '--grammar', '0.4'],
      env: { ...process.env, PYTHONPATH: stubDir, PYTHONDONTWRITEBYTECODE: '1' },
      timeoutMs: 15_000,
    });
    try {
      await expect(env.reset({ split: 'valid_seen', gameIndex: 0 })).rejects.toThrow(/speaks grammar 0.3 \('put O in\/on R'\), but --grammar 0.4 was asked/);
    } finally {
      await env.close();
    }
  });
});
