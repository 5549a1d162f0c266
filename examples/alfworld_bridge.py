#!/usr/bin/env python3
"""ALFWorld (its TextWorld engine) as a memq ProcessEnv: JSON lines over stdin/stdout.

    pip install alfworld          # text-only engine; see github.com/alfworld/alfworld
    alfworld-download             # PDDL and game files (into $ALFWORLD_DATA, default ~/.cache/alfworld)
    memq env-check process --command python3 --arg examples/alfworld_bridge.py \
        --split valid_unseen --episodes 20 --startup-timeout-ms 600000

Protocol (docs/envs.md): one request per line on stdin, one answer per line on stdout.
    {"type": "reset", "seed": 3, "split": "valid_seen", "taskType": "pick_and_place_simple", "gameIndex": 7}
    {"type": "step", "action": "go to countertop 1"}
    {"type": "close"}
Answers: {"observation", "reward", "terminated", "truncated", "info": {"admissibleActions",
"task", "won", "taskType", "gamefile", "expertAction"}} or {"error": "..."}.

Splits: train, valid_seen (ALFWorld's eval_in_distribution), valid_unseen
(eval_out_of_distribution). A reset with gameIndex plays that game of the split's sorted game
list; otherwise the seed picks one. taskType filters by ALFWorld's task names
(pick_and_place_simple, look_at_obj_in_light, pick_clean_then_place_in_recep,
pick_heat_then_place_in_recep, pick_cool_then_place_in_recep, pick_two_obj_and_place);
a prefix such as "pick_heat" is enough.

Grammar versions: ALFWorld 0.3.x places objects with "put O in/on R", ALFWorld >= 0.4 with
"move O to R" (most published ALFWorld numbers use 0.3.x). The bridge states which one the
installed engine speaks in every answer (info.grammar, info.alfworldVersion), taken from the
installed package's version, or else from the engine's own admissible commands. With
--grammar 0.3|0.4 it checks that the engine speaks that version and answers every request with
an error naming both when it does not. Commands in the other spelling are translated to the
engine's (so a policy trained on memq's household with either grammar can play).

Anything ALFWorld or TextWorld print goes to stderr: stdout carries the protocol only.
"""

import argparse
import json
import os
import random
import re
import sys
import traceback

# The protocol owns the real stdout; stray prints from libraries go to stderr.
PROTOCOL_OUT = sys.stdout
sys.stdout = sys.stderr

SPLITS = {
    "train": "train",
    "valid_seen": "eval_in_distribution",
    "valid_unseen": "eval_out_of_distribution",
}

TASK_TYPES = [
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
]

WELCOME = "-= Welcome to TextWorld, ALFRED! =-"

PUT = re.compile(r"^put (.+) in/on (.+)$")
MOVE = re.compile(r"^move (.+) to (.+)$")


def installed_alfworld_version():
    """The installed alfworld package's version string, or None when it cannot be told."""
    try:
        from importlib.metadata import version

        return version("alfworld")
    except Exception:
        pass
    try:
        import alfworld

        return getattr(alfworld, "__version__", None)
    except Exception:
        return None


def grammar_of_version(text):
    """'0.4' for ALFWorld >= 0.4, '0.3' below, None when the version is unknown or unparsable."""
    m = re.match(r"^(\d+)\.(\d+)", text or "")
    if not m:
        return None
    return "0.4" if (int(m.group(1)), int(m.group(2))) >= (0, 4) else "0.3"


def grammar_of_commands(commands):
    """The grammar the engine's admissible commands are written in, None when no placing command shows it."""
    for c in commands:
        if PUT.match(c):
            return "0.3"
        if MOVE.match(c):
            return "0.4"
    return None


def translate(action, grammar):
    """A placing command in the engine's grammar (other commands are the same in both)."""
    if grammar == "0.3":
        m = MOVE.match(action)
        return "put %s in/on %s" % (m.group(1), m.group(2)) if m else action
    if grammar == "0.4":
        m = PUT.match(action)
        return "move %s to %s" % (m.group(1), m.group(2)) if m else action
    return action


def default_config(data_dir):
    """The parts of ALFWorld's base_config.yaml that AlfredTWEnv reads to list game files."""
    return {
        "dataset": {
            "data_path": os.path.join(data_dir, "json_2.1.1", "train"),
            "eval_id_data_path": os.path.join(data_dir, "json_2.1.1", "valid_seen"),
            "eval_ood_data_path": os.path.join(data_dir, "json_2.1.1", "valid_unseen"),
            "num_train_games": -1,
            "num_eval_games": -1,
        },
        "logic": {
            "domain": os.path.join(data_dir, "logic", "alfred.pddl"),
            "grammar": os.path.join(data_dir, "logic", "alfred.twl2"),
        },
        "env": {
            "type": "AlfredTWEnv",
            "regen_game_files": False,
            "domain_randomization": False,
            "task_types": [1, 2, 3, 4, 5, 6],
            "expert_type": "handcoded",
            "goal_desc_human_anns_prob": 0.0,
        },
        "general": {"training_method": "dagger"},
    }


def load_config(path):
    if path:
        import yaml  # ALFWorld depends on PyYAML

        with open(path) as f:
            return yaml.safe_load(f)
    try:
        from alfworld.info import ALFWORLD_DATA as data_dir
    except ImportError:
        data_dir = os.environ.get("ALFWORLD_DATA", os.path.expanduser("~/.cache/alfworld"))
    return default_config(os.path.expandvars(data_dir))


def task_type_of(gamefile):
    """ALFWorld encodes the task type in the trajectory folder: <type>-<obj>-...-<scene>/trial_*/game.tw-pddl."""
    folder = os.path.basename(os.path.dirname(os.path.dirname(gamefile)))
    return folder.split("-", 1)[0]


def extract_task(observation):
    marker = "Your task is to: "
    i = observation.find(marker)
    return observation[i + len(marker):].strip().rstrip(".") if i >= 0 else ""


class AlfworldBridge:
    def __init__(self, config, max_steps, want_grammar=None):
        self.config = config
        self.max_steps = max_steps
        self.want_grammar = want_grammar  # --grammar, checked against the engine
        self.version = installed_alfworld_version()
        self.grammar = grammar_of_version(self.version)
        self.game_files = {}  # split -> sorted list
        self.env = None
        self.state = None
        self.score = 0.0
        self.steps = 0
        self.done = True
        self.gamefile = None
        self.task = ""

    def games(self, split):
        if split not in SPLITS:
            raise ValueError("unknown split %r (known: %s)" % (split, ", ".join(SPLITS)))
        if split not in self.game_files:
            from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

            lister = AlfredTWEnv(self.config, train_eval=SPLITS[split])
            self.game_files[split] = sorted(lister.game_files)
        return self.game_files[split]

    def pick_game(self, split, seed, task_type, game_index):
        files = self.games(split)
        if task_type:
            files = [f for f in files if task_type_of(f).startswith(task_type)]
            if not files:
                raise ValueError("no %s game has a task type starting with %r (known: %s)"
                                 % (split, task_type, ", ".join(TASK_TYPES)))
        if game_index is not None:
            if not 0 <= game_index < len(files):
                raise ValueError("gameIndex %d outside the %d games" % (game_index, len(files)))
            return files[game_index]
        return files[random.Random(seed).randrange(len(files))]

    def start(self, gamefile):
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

        if self.env is not None:
            self.env.close()
        request = textworld.EnvInfos(won=True, admissible_commands=True, expert_type="handcoded",
                                     expert_plan=True, extras=["gamefile"])
        self.env = textworld.start(gamefile, request_infos=request,
                                   wrappers=[AlfredDemangler(shuffle=False), AlfredInfos])
        self.gamefile = gamefile

    def check_grammar(self, commands):
        """Settles the engine's grammar (version, else its commands) and checks --grammar against it."""
        if self.grammar is None:
            self.grammar = grammar_of_commands(commands)
        if self.want_grammar and self.grammar and self.grammar != self.want_grammar:
            spelling = {"0.3": "put O in/on R", "0.4": "move O to R"}
            raise ValueError("the installed ALFWorld (version %s) speaks grammar %s ('%s'), but --grammar %s was asked"
                             % (self.version or "unknown", self.grammar, spelling[self.grammar], self.want_grammar))

    def answer(self, observation, reward, terminated, truncated):
        state = self.state
        plan = state.get("expert_plan") or []
        actions = [a for a in (state.get("admissible_commands") or []) if a != "help"]
        self.check_grammar(actions)
        won = bool(state.get("won"))
        return {
            "observation": observation,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "info": {
                "admissibleActions": [] if (terminated or truncated) else actions,
                "task": self.task,
                "won": won,
                "taskType": task_type_of(self.gamefile),
                "gamefile": self.gamefile,
                "steps": self.steps,
                "expertAction": plan[0] if plan and not (terminated or truncated) else None,
                "grammar": self.grammar,
                "alfworldVersion": self.version,
            },
        }

    def reset(self, request):
        split = request.get("split") or "train"
        seed = request.get("seed", 0)
        self.start(self.pick_game(split, seed, request.get("taskType"), request.get("gameIndex")))
        self.state = self.env.reset()
        observation = self.state.feedback.replace(WELCOME, "").strip()
        self.task = extract_task(observation)
        self.score = float(self.state.get("score") or 0.0)
        self.steps = 0
        self.done = False
        return self.answer(observation, 0.0, False, False)

    def step(self, request):
        if self.env is None or self.done:
            raise RuntimeError("no episode in progress; send a reset first")
        action = request.get("action")
        if not isinstance(action, str):
            raise ValueError("a step request needs a string 'action'")
        self.state, score, done = self.env.step(translate(action, self.grammar))
        self.steps += 1
        reward = float(score) - self.score  # TextWorld reports the cumulative score
        self.score = float(score)
        terminated = bool(done)
        truncated = not terminated and self.steps >= self.max_steps
        self.done = terminated or truncated
        return self.answer(self.state.feedback.strip(), reward, terminated, truncated)

    def close(self):
        if self.env is not None:
            self.env.close()
            self.env = None


def send(message):
    PROTOCOL_OUT.write(json.dumps(message) + "\n")
    PROTOCOL_OUT.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="ALFWorld YAML config (default: built-in, reading $ALFWORLD_DATA)")
    parser.add_argument("--max-steps", type=int, default=50, help="truncate episodes after this many steps")
    parser.add_argument("--grammar", choices=["0.3", "0.4"],
                        help="require this ALFWorld command grammar (0.3: 'put O in/on R', 0.4: 'move O to R')")
    args = parser.parse_args()
    bridge = AlfworldBridge(load_config(args.config), args.max_steps, args.grammar)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            kind = request.get("type")
            if kind == "close":
                break
            if kind == "reset":
                send(bridge.reset(request))
            elif kind == "step":
                send(bridge.step(request))
            else:
                send({"error": "unknown request type %r" % (kind,)})
        except Exception as exc:  # report, stay usable
            traceback.print_exc(file=sys.stderr)
            send({"error": "%s: %s" % (type(exc).__name__, exc)})
    bridge.close()


if __name__ == "__main__":
    main()
