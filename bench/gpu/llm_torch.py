#!/usr/bin/env python3
"""PyTorch + PEFT baseline for bench/gpu/llm.sh, and the merge with memq's numbers.

For each model of memq's run (bench_llm_cuda's JSON, --memq) this builds a randomly initialised
Qwen2 model with the same shape (transformers' Qwen2ForCausalLM from a Qwen2Config, bf16 weights,
built directly on the GPU), wraps it with PEFT LoRA (same r, alpha = 2r, same target modules,
dropout 0; PEFT keeps the adapter weights in float32), and times eager-mode training steps on the
same weighted loss memq trains (MATH §11: per-token weights, prompt half 0, action half 1,
L = sum w nll / sum w), with torch.optim.AdamW over the adapter and clip_grad_norm_(1.0):
forward, loss, backward, clip, step, zero_grad. Same batch and sequence length as memq's run
(halved on OOM, recorded). Scoring: PyTorch without prompt sharing, the usual way (every
prompt + candidate sequence run in full, log-probs of the candidate tokens), no_grad.

Writes one JSON (--out): memq's runs, PyTorch's, and per model the ratio memq / PyTorch of
training tokens/s and of scored candidates/s, with MFU from the same FLOP formula for both
(bench_llm_cuda.cpp's). Without PyTorch, CUDA, transformers or peft it still writes memq's numbers
and says why the baseline is missing (exit status 0; 4 when --require-torch).
"""
import argparse
import json
import math
import sys
import time

SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
}


def vocab_of(key):
    return 1000 if key == "tiny" else 151936


def forward_flops_per_token(key, ctx):
    """memq::llm::Model::forward_flops_per_token for the shape."""
    s = SHAPES[key]
    C, I, L = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    H, KV = s["num_attention_heads"], s["num_key_value_heads"]
    D = C // H
    QD, KD = H * D, KV * D
    per_layer = 2.0 * (C * QD + 2.0 * C * KD + QD * C + 3.0 * C * I) + 2.0 * 2.0 * H * D * ctx
    return L * per_layer + 2.0 * C * vocab_of(key)


def train_flops_per_token(key, T):
    head = 2.0 * SHAPES[key]["hidden_size"] * vocab_of(key)
    return 2.0 * (forward_flops_per_token(key, T // 2) - head) + 2.0 * head * 0.5


def torch_run(key, batch, T, r, targets, steps, warmup, attn, score_cfg):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config

    dev = torch.device("cuda")
    cfg = Qwen2Config(vocab_size=vocab_of(key), max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
                      tie_word_embeddings=True, use_cache=False, **SHAPES[key])
    t0 = time.time()
    torch.manual_seed(0)
    with torch.device(dev):  # initialise on the GPU (seconds, not minutes on the CPU)
        try:
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn, torch_dtype=torch.bfloat16)
        except TypeError:  # transformers versions without one of these keywords
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
        model = model.to(device=dev, dtype=torch.bfloat16)
    lcfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    init_s = time.time() - t0
    params = [p for p in model.parameters() if p.requires_grad]
    adapter_dtype = str(params[0].dtype) if params else "none"
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    out = {"model_key": key, "attn_implementation": attn, "init_s": init_s, "adapter_dtype": adapter_dtype,
           "lora_params": sum(p.numel() for p in params), "torch": torch.__version__}
    try:
        import peft
        import transformers
        out["peft"] = peft.__version__
        out["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001 - versions are informational
        pass
    V = vocab_of(key)
    g = torch.Generator(device=dev).manual_seed(7)

    def step(ids, w):
        logits = model(input_ids=ids).logits  # [B, T, V] bf16
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        ww = w[:, 1:]
        loss = (ww * nll).sum() / ww.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    B = batch
    while True:
        try:
            ids = torch.randint(0, V, (B, T), device=dev, generator=g)
            w = torch.zeros(B, T, device=dev)
            w[:, T // 2:] = 1.0
            for _ in range(warmup):
                step(ids, w)
            torch.cuda.synchronize()
            t1 = time.time()
            for _ in range(steps):
                loss = step(ids, w)
            torch.cuda.synchronize()
            step_s = (time.time() - t1) / steps
            out["loss_last"] = float(loss)
            break
        except torch.cuda.OutOfMemoryError:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if B == 1:
                raise
            B //= 2
            out.setdefault("oom_halvings", 0)
            out["oom_halvings"] += 1
    tps = B * T / step_s
    out.update({"batch": B, "train_step_s": step_s, "train_tokens_per_s": tps,
                "peak_memory_bytes": torch.cuda.max_memory_allocated()})
    # scoring without prompt sharing: every prompt + candidate sequence in full
    if score_cfg:
        NP, P, K, A = score_cfg
        model.eval()
        prompts = torch.randint(0, V, (NP, P), device=dev, generator=g)
        cands = torch.randint(0, V, (NP, K, A), device=dev, generator=g)
        seqs = torch.cat([prompts[:, None, :].expand(NP, K, P), cands], dim=-1).reshape(NP * K, P + A)

        def score():
            res = []
            with torch.no_grad():
                for s in seqs.split(64):
                    lg = model(input_ids=s).logits[:, P - 1:-1].float()
                    lp = torch.log_softmax(lg, dim=-1).gather(-1, s[:, P:, None]).squeeze(-1)
                    res.append(lp.sum(-1))
            return torch.cat(res)

        score()
        torch.cuda.synchronize()
        t1 = time.time()
        reps = 3
        for _ in range(reps):
            score()
        torch.cuda.synchronize()
        sec = (time.time() - t1) / reps
        out.update({"score_s": sec, "score_candidates_per_s": NP * K / sec,
                    "score_tokens_per_s": NP * K * (P + A) / sec, "score_method": "full prompt+candidate sequences"})
    del model, opt
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memq", required=True, help="bench_llm_cuda's JSON")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--attn", default="sdpa", help="transformers attn_implementation: sdpa (default) or eager")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--require-torch", action="store_true")
    ap.add_argument("--tests", default="not run", help="the C++ tests' outcome, recorded")
    args = ap.parse_args()

    with open(args.memq) as f:
        memq = json.load(f)
    result = {"memq": memq, "torch": [], "comparison": [], "tests": args.tests,
              "flops_convention": "per trained token: 2 x forward at causal context T/2 without the LM head "
                                  "(forward + input-gradient backward, base frozen) + LM head fwd+bwd on the "
                                  "weighted half; MFU against the dense bf16 peak"}
    missing = None
    if args.skip_torch:
        missing = "skipped (--skip-torch)"
    else:
        try:
            import torch  # noqa: F401
            if not torch.cuda.is_available():
                missing = "torch.cuda.is_available() is False"
            else:
                import peft  # noqa: F401
                import transformers  # noqa: F401
        except ImportError as e:
            missing = f"cannot import {e.name}"
    if "error" in memq:
        result["note"] = "memq did not run: " + memq["error"]
    runs = [r for r in memq.get("runs", []) if "train_tokens_per_s" in r]
    peak = memq.get("bf16_peak_flops", 0.0)
    T = memq.get("seq", 512)
    targets = memq.get("lora_targets", "q_proj,v_proj").split(",")
    r = memq.get("lora_r", 8)
    if missing:
        result["torch_missing"] = missing
        print(f"llm_torch.py: PyTorch baseline not run: {missing}", file=sys.stderr)
    else:
        for run in runs:
            key = run["model_key"]
            score_cfg = None
            if "score_prompts" in run:
                score_cfg = (run["score_prompts"], run["score_prompt_tokens"], run["score_candidates_per_prompt"],
                             run["score_candidate_tokens"])
            print(f"llm_torch.py: {key}: batch {run['batch']} x {T}, PEFT r={r} on {','.join(targets)}, "
                  f"attn {args.attn}", flush=True)
            try:
                t = torch_run(key, run["batch"], T, r, targets, args.steps, args.warmup, args.attn, score_cfg)
            except Exception as e:  # noqa: BLE001 - record and continue with the next model
                t = {"model_key": key, "error": f"{type(e).__name__}: {e}"}
            result["torch"].append(t)
            print(f"  torch: {json.dumps(t)}", flush=True)
    for run in runs:
        key = run["model_key"]
        fl = train_flops_per_token(key, T)
        row = {"model_key": key, "memq_batch": run["batch"], "memq_train_tokens_per_s": run["train_tokens_per_s"],
               "train_flops_per_token": fl}
        if peak:
            row["memq_mfu"] = run["train_tokens_per_s"] * fl / peak
        t = next((x for x in result["torch"] if x.get("model_key") == key and "train_tokens_per_s" in x), None)
        if t:
            row.update({"torch_batch": t["batch"], "torch_train_tokens_per_s": t["train_tokens_per_s"],
                        "train_ratio_memq_over_torch": run["train_tokens_per_s"] / t["train_tokens_per_s"]})
            if peak:
                row["torch_mfu"] = t["train_tokens_per_s"] * fl / peak
            if "score_candidates_per_s" in t and "score_candidates_per_s" in run:
                row.update({"memq_score_candidates_per_s": run["score_candidates_per_s"],
                            "torch_score_candidates_per_s": t["score_candidates_per_s"],
                            "score_ratio_memq_over_torch": run["score_candidates_per_s"] / t["score_candidates_per_s"]})
        result["comparison"].append(row)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"\n{'model':6} {'memq tok/s':>12} {'torch tok/s':>12} {'ratio':>7} {'memq MFU':>9} {'torch MFU':>9} "
          f"{'score ratio':>11}")
    for row in result["comparison"]:
        def f(k, fmt):
            return format(row[k], fmt) if k in row else "-"
        print(f"{row['model_key']:6} {f('memq_train_tokens_per_s', '12.0f'):>12} {f('torch_train_tokens_per_s', '12.0f'):>12} "
              f"{f('train_ratio_memq_over_torch', '7.2f'):>7} {f('memq_mfu', '9.3f'):>9} {f('torch_mfu', '9.3f'):>9} "
              f"{f('score_ratio_memq_over_torch', '11.2f'):>11}")
    print(f"results: {args.out}")
    if missing and args.require_torch:
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
