#!/usr/bin/env python3
"""PyTorch CPU peer of `memq bench llm` (bench/llm.ts), float32, on the same HF model directory.

A long-lived worker so that the bench can interleave its repetitions with memq's and llama.cpp's:
it loads the weights once, then reads one JSON command per line on stdin and answers one JSON line
on stdout:

    {"op": "gemm", "m": M, "n": N, "k": K}                      -> {"seconds": s}   (A[M,K] B[N,K]^T)
    {"op": "score", "B": B, "P": P, "K": K, "A": A}              -> {"seconds": s}
    {"op": "forward", "B": B, "T": T}                            -> {"seconds": s}
    {"op": "lora", "B": B, "T": T, "last": n, "r": r}            -> {"seconds": s}
    {"op": "score_values", "prompts": [[ids]], "cands": [[[ids]]]}  -> {"scores": [[sum log p]]}
    {"op": "quit"}

Each command runs its workload once and returns its own wall time (time.perf_counter around the
call only); the first call of a workload is the caller's warm-up. Inputs are random token ids from
a fixed generator, made once per workload shape.

    python3 scripts/torch_bench.py MODEL_DIR [--threads N]

The workloads, written as plain PyTorch would do them (no memq code):
  score    B prompts of P tokens run once (keys/values kept), then each prompt's K candidates of A
           tokens as one batch attending to that prompt's cache; log-softmax over the vocabulary at
           the last prompt position and the first A-1 positions of every candidate, summed per
           candidate (the same positions memq's scorer reads).
  forward  B sequences of T tokens, log-probability of every next token.
  lora     LoRA r on all seven projections of every layer (PEFT's W + (alpha/r) B A, alpha = 2r),
           frozen base; loss = mean next-token NLL of the last n tokens of each sequence (the LM head
           only on those positions), backward into A and B, AdamW step.
The decoder itself (RMSNorm, RoPE, GQA, SwiGLU, tied head) follows scripts/torch_reference.py's
HF-derived definition, in float32 with a key/value cache added.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import TARGET_ORDER, head_dim, module_path, rms_norm  # noqa: E402


def read_f32_tensors(path):
    """The tensors of a safetensors file as float32 torch tensors, read one at a time (no copy of the whole file)."""
    import struct
    import numpy as np
    out = {}
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n).decode('utf-8'))
        for name, info in header.items():
            if name == '__metadata__':
                continue
            b, e = info['data_offsets']
            f.seek(8 + n + b)
            raw = f.read(e - b)
            if info['dtype'] == 'F32':
                arr = np.frombuffer(raw, dtype='<f4')
            elif info['dtype'] == 'BF16':
                arr = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
            elif info['dtype'] == 'F16':
                arr = np.frombuffer(raw, dtype='<f2').astype(np.float32)
            else:
                raise ValueError(f'{path}: tensor {name} has dtype {info["dtype"]} (F32, BF16 or F16 expected)')
            out[name] = torch.from_numpy(arr.reshape(info['shape']).copy())
    return out


def rope_tables(theta, d, n):
    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    return emb.cos().float(), emb.sin().float()


def apply_rope(x, cos, sin):
    d = x.shape[-1]
    rot = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


class Decoder:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, 'config.json')) as f:
            self.c = json.load(f)
        self.W = read_f32_tensors(os.path.join(model_dir, 'model.safetensors'))
        c = self.c
        self.D = head_dim(c)
        self.cos, self.sin = rope_tables(c['rope_theta'], self.D, 4096)
        self.head = self.W['model.embed_tokens.weight' if c['tie_word_embeddings'] else 'lm_head.weight']

    def lin(self, h, l, t, lora, scale):
        p = module_path(l, t)
        y = torch.nn.functional.linear(h, self.W[p + '.weight'], self.W.get(p + '.bias'))
        if lora is not None:
            A, Bm = lora[p]
            y = y + scale * ((h @ A.t()) @ Bm.t())
        return y

    def hidden(self, tok, past=None, lora=None, scale=0.0):
        """Final-norm hidden states [N, T, C] of tok [N, T] after `past` (per layer (k, v) [N, KV, P, D]);
        returns (x, new per-layer (k, v) including the past)."""
        c, D = self.c, self.D
        H, KV = c['num_attention_heads'], c['num_key_value_heads']
        N, T = tok.shape
        P = 0 if past is None else past[0][0].shape[2]
        cos, sin = self.cos[P:P + T], self.sin[P:P + T]
        mask = torch.full((T, P + T), float('-inf')).triu(P + 1)
        x = self.W['model.embed_tokens.weight'][tok]
        kvs = []
        for l in range(c['num_hidden_layers']):
            p = f'model.layers.{l}.'
            h = rms_norm(x, self.W[p + 'input_layernorm.weight'], c['rms_norm_eps'])
            q = self.lin(h, l, 'q_proj', lora, scale).view(N, T, H, D).transpose(1, 2)
            k = self.lin(h, l, 'k_proj', lora, scale).view(N, T, KV, D).transpose(1, 2)
            v = self.lin(h, l, 'v_proj', lora, scale).view(N, T, KV, D).transpose(1, 2)
            if c['model_type'] == 'qwen3':
                q = rms_norm(q, self.W[p + 'self_attn.q_norm.weight'], c['rms_norm_eps'])
                k = rms_norm(k, self.W[p + 'self_attn.k_norm.weight'], c['rms_norm_eps'])
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if past is not None:
                k = torch.cat([past[l][0], k], 2)
                v = torch.cat([past[l][1], v], 2)
            kvs.append((k, v))
            rep = H // KV
            kr, vr = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.softmax(q @ kr.transpose(-1, -2) / math.sqrt(D) + mask, -1)
            o = (att @ vr).transpose(1, 2).reshape(N, T, H * D)
            x = x + self.lin(o, l, 'o_proj', lora, scale)
            h = rms_norm(x, self.W[p + 'post_attention_layernorm.weight'], c['rms_norm_eps'])
            g = torch.nn.functional.silu(self.lin(h, l, 'gate_proj', lora, scale)) * self.lin(h, l, 'up_proj', lora, scale)
            x = x + self.lin(g, l, 'down_proj', lora, scale)
        return rms_norm(x, self.W['model.norm.weight'], c['rms_norm_eps']), kvs


class Worker:
    def __init__(self, model_dir):
        self.m = Decoder(model_dir)
        self.V = self.m.c['vocab_size']
        self.cache = {}

    def ids(self, key, shape, seed):
        k = (key, tuple(shape))
        if k not in self.cache:
            g = torch.Generator().manual_seed(seed)
            self.cache[k] = torch.randint(0, self.V, shape, generator=g)
        return self.cache[k]

    def gemm(self, cmd):
        k = ('gemm', cmd['m'], cmd['n'], cmd['k'])
        if k not in self.cache:
            self.cache[k] = (torch.rand(cmd['m'], cmd['k']) - 0.5, torch.rand(cmd['n'], cmd['k']) - 0.5)
        a, b = self.cache[k]
        return lambda: a @ b.t()

    def score(self, cmd, prompts=None, cands=None):
        B, P, K, A = cmd['B'], cmd['P'], cmd['K'], cmd['A']
        if prompts is None:
            prompts, cands = self.ids('sp', (B, P), 2), self.ids('sc', (B, K, A), 3)
        m = self.m

        def run():
            with torch.no_grad():
                xp, kv = m.hidden(prompts)
                first = torch.log_softmax(xp[:, -1] @ m.head.t(), -1).gather(-1, cands[:, :, 0])  # [B, K]
                total = first.clone()
                for b in range(B):
                    past = [(k[b:b + 1].expand(K, -1, -1, -1), v[b:b + 1].expand(K, -1, -1, -1)) for k, v in kv]
                    xc, _ = m.hidden(cands[b, :, :-1], past)
                    lp = torch.log_softmax(xc @ m.head.t(), -1).gather(-1, cands[b, :, 1:, None])[..., 0]
                    total[b] += lp.sum(1)
                return total
        return run

    def forward(self, cmd):
        seqs = self.ids('f', (cmd['B'], cmd['T']), 4)
        m = self.m

        def run():
            with torch.no_grad():
                x, _ = m.hidden(seqs)
                return torch.log_softmax(x[:, :-1] @ m.head.t(), -1).gather(-1, seqs[:, 1:, None])
        return run

    def lora(self, cmd):
        B, T, n, r = cmd['B'], cmd['T'], cmd['last'], cmd['r']
        key = ('lora', B, T, n, r)
        if key not in self.cache:
            c, D = self.m.c, self.m.D
            C, I = c['hidden_size'], c['intermediate_size']
            QD, KD = c['num_attention_heads'] * D, c['num_key_value_heads'] * D
            dims = {'q_proj': (C, QD), 'k_proj': (C, KD), 'v_proj': (C, KD), 'o_proj': (QD, C),
                    'gate_proj': (C, I), 'up_proj': (C, I), 'down_proj': (I, C)}
            g = torch.Generator().manual_seed(5)
            params, lora = [], {}
            for l in range(c['num_hidden_layers']):
                for t in TARGET_ORDER:
                    a = ((torch.rand(r, dims[t][0], generator=g) * 2 - 1) / math.sqrt(dims[t][0])).requires_grad_(True)
                    b = torch.zeros(dims[t][1], r).requires_grad_(True)
                    params += [a, b]
                    lora[module_path(l, t)] = (a, b)
            opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
            self.cache[key] = (lora, opt)
        lora, opt = self.cache[key]
        seqs = self.ids('f', (B, T), 4)
        m = self.m

        def run():
            x, _ = m.hidden(seqs, lora=lora, scale=2.0)
            logits = x[:, T - 1 - n:T - 1] @ m.head.t()
            loss = -torch.log_softmax(logits, -1).gather(-1, seqs[:, T - n:, None]).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run


def score_values(w, cmd):
    """The scoring workload's sums of log p(candidate | prompt) on given ids (equal lengths), for the test
    that checks this peer computes what memq's scorer does."""
    prompts, cands = torch.tensor(cmd['prompts']), torch.tensor(cmd['cands'])
    B, P = prompts.shape
    _, K, A = cands.shape
    return w.score(dict(B=B, P=P, K=K, A=A), prompts, cands)().tolist()


def blas_loaded():
    """The BLAS shared libraries this process has mapped (Debian's torch links libblas.so.3, whichever that is)."""
    try:
        with open('/proc/self/maps') as f:
            libs = {os.path.realpath(l.split()[-1]) for l in f if 'blas' in l.lower() and l.split()[-1].startswith('/')}
        return ', '.join(sorted(libs)) or 'none mapped'
    except OSError:
        return 'unknown'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model_dir')
    ap.add_argument('--threads', type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(True)
    w = Worker(args.model_dir)
    print(json.dumps(dict(ready=True, torch=torch.__version__, threads=torch.get_num_threads(), blas=blas_loaded())), flush=True)
    fns = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd['op'] == 'quit':
            break
        try:
            if cmd['op'] == 'score_values':
                print(json.dumps(dict(scores=score_values(w, cmd))), flush=True)
                continue
            key = json.dumps(cmd, sort_keys=True)
            if key not in fns:
                fns[key] = getattr(w, cmd['op'])(cmd)
            t0 = time.perf_counter()
            fns[key]()
            out = dict(seconds=time.perf_counter() - t0)
        except Exception as e:  # the bench reports it and goes on
            out = dict(error=f'{type(e).__name__}: {e}')
        print(json.dumps(out), flush=True)


if __name__ == '__main__':
    sys.exit(main())
