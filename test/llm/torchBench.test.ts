/**
 * The PyTorch peer of `memq bench llm` (scripts/torch_bench.py) computes what memq's scorer does:
 * on a tiny random qwen2 model saved by memq, its cached-prompt scoring (prompt once, candidates
 * over the prompt's keys/values) gives the same sums of log p(candidate | prompt) as
 * LlmModel.score (both float32; |Δ| ≤ 1e-3 on sums of 8 log-probabilities of magnitude ~44).
 * A negative control: scores of other candidates differ by more. Skipped (with a message) when
 * no python3 with torch is found (MEMQ_PYTHON names one); CI does not need torch.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { describe, expect, it } from 'vitest';
import { LlmModel } from '../../lib/llm/model';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'torch_bench.py');

function torchPython(): string | undefined {
  for (const py of [process.env.MEMQ_PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => !!x)) {
    if (spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0) return py;
  }
  return undefined;
}

const py = torchPython();
if (!py) console.warn('torchBench.test.ts skipped: no python3 with torch (set MEMQ_PYTHON)');

describe.skipIf(!py)('scripts/torch_bench.py (the PyTorch bench peer)', () => {
  it('scores candidates as LlmModel.score does (same weights, float32)', async () => {
    const V = 97;
    const model = LlmModel.createRandom({
      model_type: 'qwen2', vocab_size: V, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
    }, { seed: 7, initStd: 0.2 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-torch-bench-'));
    try {
      model.save(dir);
      let s = 12345;
      const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31), s % V);
      const B = 2, P = 6, K = 3, A = 4;
      const prompts = Array.from({ length: B }, () => Array.from({ length: P }, rnd));
      const cands = Array.from({ length: B }, () => Array.from({ length: K }, () => Array.from({ length: A }, rnd)));
      const input = JSON.stringify({ op: 'score_values', prompts, cands }) + '\n' + JSON.stringify({ op: 'quit' }) + '\n';
      const r = spawnSync(py!, [SCRIPT, dir, '--threads', '1'], { input, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(lines[0].ready).toBe(true);
      const torchScores: number[][] = lines[1].scores;
      const memq = await model.score(prompts, cands);
      let worst = 0, control = Infinity;
      for (let b = 0; b < B; b++) {
        for (let k = 0; k < K; k++) {
          expect(Number.isFinite(memq[b][k])).toBe(true);
          worst = Math.max(worst, Math.abs(memq[b][k] - torchScores[b][k]));
          control = Math.min(control, Math.abs(memq[b][k] - torchScores[b][(k + 1) % K]));
        }
      }
      expect(worst).toBeLessThan(1e-3);
      expect(control).toBeGreaterThan(1e-3);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
