#!/usr/bin/env python3
"""Plain-PyTorch reference of memq's transformer engine, dumping fixtures for test/llm/torch.test.ts.

Regenerate (CI does not need torch; the fixtures are committed):

    python3 scripts/torch_reference.py            # writes test/fixtures/torch/
    python3 scripts/torch_reference.py --check    # recomputes and compares with the committed outputs
(The timing peer of `memq bench llm` is scripts/torch_bench.py, which uses this file's definitions.)

Needs torch and numpy only (no transformers, no safetensors package): its own safetensors reader
and writer below. Written from the Hugging Face model definitions (modeling_llama / qwen2 / qwen3)
and PEFT's LoRA, not from memq's code:
  RMSNorm x * rsqrt(mean(x^2) + eps) * w; RoPE with rotate_half on (i, i + d/2), inv_freq
  theta^(-2i/d); q/k/v biases (qwen2; llama/qwen3 with attention_bias, plus o); qwen3 RMSNorm of
  each q/k head before RoPE; causal GQA softmax(q k^T / sqrt(d)) v; SwiGLU down(silu(gate) * up);
  tied or untied LM head; LoRA W + scale * B A with scale = alpha / r (alpha / sqrt(r) with rsLoRA).

For each tiny model (random weights from a fixed numpy seed, written as an HF directory with a
PEFT adapter that memq loads) and each batch it writes, in float64 arithmetic:
  - logits of every position of every sequence,
  - the MATH section 11 weighted cross-entropy L = sum_t w_t * -log p(x_t | x_<t), divided by
    sum_t w_t ("weightSum") or not ("sum"), prompt tokens weighted 0 (and signed weights with "sum"),
  - dL/dA and dL/dB of every LoRA matrix (autograd, float64).
Outputs: test/fixtures/torch/<case>/{config.json, model.safetensors, adapter/…, expected.safetensors,
batches.json}. Everything is float32 on disk (weights as memq loads them; outputs rounded once).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'torch')

# ------------------------------------------------------------------------------------------------
# safetensors (u64 LE header length, JSON header {name: {dtype, shape, data_offsets}}, data)

DTYPES = {'F32': np.float32, 'F64': np.float64, 'F16': np.float16}


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        b, e = info['data_offsets']
        if info['dtype'] == 'BF16':
            u = np.frombuffer(data[b:e], dtype='<u2').astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data[b:e], dtype=np.dtype(DTYPES[info['dtype']]).newbyteorder('<'))
        out[name] = arr.reshape(info['shape']).astype(np.float64)
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype='<f4')
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(',', ':')).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ------------------------------------------------------------------------------------------------
# the cases

CASES = {
    'qwen2': dict(
        config=dict(model_type='qwen2', vocab_size=48, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, max_position_embeddings=256),
        lora=dict(r=4, lora_alpha=8, use_rslora=False, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
        seed=101),
    'llama': dict(
        config=dict(model_type='llama', vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, rope_theta=500000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, attention_bias=True, max_position_embeddings=256),
        lora=dict(r=4, lora_alpha=6, use_rslora=True, target_modules=['q_proj', 'v_proj', 'o_proj', 'down_proj']),
        seed=102),
    'qwen3': dict(
        config=dict(model_type='qwen3', vocab_size=44, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=12, rope_theta=1000000.0, rms_norm_eps=1e-6,
                    tie_word_embeddings=True, attention_bias=False, max_position_embeddings=256),
        lora=dict(r=2, lora_alpha=4, use_rslora=False, target_modules=['k_proj', 'v_proj', 'gate_proj', 'up_proj']),
        seed=103),
}
TARGET_ORDER = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
MLP = {'gate_proj', 'up_proj', 'down_proj'}


def head_dim(c):
    return c.get('head_dim') or c['hidden_size'] // c['num_attention_heads']


def shapes(c):
    """HF tensor names and shapes for config c."""
    C, I, D = c['hidden_size'], c['intermediate_size'], head_dim(c)
    QD, KD = c['num_attention_heads'] * D, c['num_key_value_heads'] * D
    qkv_bias = c['model_type'] == 'qwen2' or c.get('attention_bias', False)
    o_bias = c['model_type'] != 'qwen2' and c.get('attention_bias', False)
    s = {'model.embed_tokens.weight': (c['vocab_size'], C)}
    for l in range(c['num_hidden_layers']):
        p = f'model.layers.{l}.'
        s[p + 'input_layernorm.weight'] = (C,)
        s[p + 'self_attn.q_proj.weight'] = (QD, C)
        s[p + 'self_attn.k_proj.weight'] = (KD, C)
        s[p + 'self_attn.v_proj.weight'] = (KD, C)
        s[p + 'self_attn.o_proj.weight'] = (C, QD)
        if qkv_bias:
            s[p + 'self_attn.q_proj.bias'] = (QD,)
            s[p + 'self_attn.k_proj.bias'] = (KD,)
            s[p + 'self_attn.v_proj.bias'] = (KD,)
        if o_bias:
            s[p + 'self_attn.o_proj.bias'] = (C,)
        if c['model_type'] == 'qwen3':
            s[p + 'self_attn.q_norm.weight'] = (D,)
            s[p + 'self_attn.k_norm.weight'] = (D,)
        s[p + 'post_attention_layernorm.weight'] = (C,)
        s[p + 'mlp.gate_proj.weight'] = (I, C)
        s[p + 'mlp.up_proj.weight'] = (I, C)
        s[p + 'mlp.down_proj.weight'] = (C, I)
    s['model.norm.weight'] = (C,)
    if not c['tie_word_embeddings']:
        s['lm_head.weight'] = (c['vocab_size'], C)
    return s


def module_path(l, t):
    return f"model.layers.{l}.{'mlp' if t in MLP else 'self_attn'}.{t}"


def make_case(name, spec, out):
    """Random weights (numpy seed) written as an HF directory + PEFT adapter."""
    c, lc = spec['config'], spec['lora']
    rng = np.random.default_rng(spec['seed'])
    w = {}
    for k, shp in shapes(c).items():
        if k.endswith('norm.weight'):
            w[k] = 1.0 + 0.1 * rng.standard_normal(shp)
        else:
            w[k] = 0.2 * rng.standard_normal(shp)
    os.makedirs(os.path.join(out, 'adapter'), exist_ok=True)
    cfg = dict(c, architectures=[{'qwen2': 'Qwen2ForCausalLM', 'llama': 'LlamaForCausalLM', 'qwen3': 'Qwen3ForCausalLM'}[c['model_type']]],
               hidden_act='silu')
    with open(os.path.join(out, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out, 'model.safetensors'), w)
    C, I, D = c['hidden_size'], c['intermediate_size'], head_dim(c)
    QD, KD = c['num_attention_heads'] * D, c['num_key_value_heads'] * D
    dims = {'q_proj': (C, QD), 'k_proj': (C, KD), 'v_proj': (C, KD), 'o_proj': (QD, C), 'gate_proj': (C, I), 'up_proj': (C, I), 'down_proj': (I, C)}
    a = {}
    for l in range(c['num_hidden_layers']):
        for t in TARGET_ORDER:
            if t not in lc['target_modules']:
                continue
            fan_in, fan_out = dims[t]
            # B is non-zero (a trained adapter) so that dL/dA is not zero
            a[f'base_model.model.{module_path(l, t)}.lora_A.weight'] = rng.uniform(-1, 1, (lc['r'], fan_in)) / math.sqrt(fan_in)
            a[f'base_model.model.{module_path(l, t)}.lora_B.weight'] = 0.3 * rng.standard_normal((fan_out, lc['r']))
    write_safetensors(os.path.join(out, 'adapter', 'adapter_model.safetensors'), a)
    with open(os.path.join(out, 'adapter', 'adapter_config.json'), 'w') as f:
        json.dump(dict(peft_type='LORA', task_type='CAUSAL_LM', r=lc['r'], lora_alpha=lc['lora_alpha'], use_rslora=lc['use_rslora'],
                       target_modules=lc['target_modules'], lora_dropout=0.0, bias='none', base_model_name_or_path=name,
                       fan_in_fan_out=False), f, indent=2)
    # batches: ragged sequences; weights 0 on the prompt (and always on the first token)
    V = c['vocab_size']
    lens = [(5, 3), (9, 4), (2, 6)]  # (prompt, action) lengths
    seqs, pos_w, signed_w = [], [], []
    for p, n in lens:
        s = rng.integers(0, V, p + n).tolist()
        seqs.append(s)
        pos_w.append([0.0] * p + [float(x) for x in np.round(rng.uniform(0.1, 1.0), 6).repeat(n)])
        signed_w.append([0.0] * p + [float(x) for x in np.round(rng.uniform(-1.0, 1.0), 6).repeat(n)])
    batches = [dict(name='positive', seqs=seqs, weights=pos_w, norm='weightSum'),
               dict(name='signed', seqs=seqs, weights=signed_w, norm='sum')]
    with open(os.path.join(out, 'batches.json'), 'w') as f:
        json.dump(batches, f)


# ------------------------------------------------------------------------------------------------
# the forward (float64, one sequence at a time, no cache)

def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    # x: [..., T, d]; HF's rotate_half convention
    T, d = x.shape[-2], x.shape[-1]
    inv = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    rot = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def forward(c, W, lora, scale, tokens):
    """Logits [B, T, V] of B equal-length sequences ([T] → [T, V]); lora: {module path: (A, B)}."""
    single = not torch.is_tensor(tokens) or tokens.dim() == 1
    tok = torch.as_tensor(tokens).reshape(1, -1) if single else tokens
    C, D = c['hidden_size'], head_dim(c)
    H, KV = c['num_attention_heads'], c['num_key_value_heads']
    eps, theta = c['rms_norm_eps'], c['rope_theta']
    B, T = tok.shape

    def lin(h, l, t):
        p = module_path(l, t)
        y = h @ W[p + '.weight'].T
        if p + '.bias' in W:
            y = y + W[p + '.bias']
        if p in lora:
            A, Bm = lora[p]
            y = y + scale * ((h @ A.T) @ Bm.T)
        return y

    x = W['model.embed_tokens.weight'][tok]
    mask = torch.full((T, T), float('-inf'), dtype=x.dtype).triu(1)
    for l in range(c['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = rms_norm(x, W[p + 'input_layernorm.weight'], eps)
        q = lin(h, l, 'q_proj').view(B, T, H, D).transpose(1, 2)
        k = lin(h, l, 'k_proj').view(B, T, KV, D).transpose(1, 2)
        v = lin(h, l, 'v_proj').view(B, T, KV, D).transpose(1, 2)
        if c['model_type'] == 'qwen3':
            q = rms_norm(q, W[p + 'self_attn.q_norm.weight'], eps)
            k = rms_norm(k, W[p + 'self_attn.k_norm.weight'], eps)
        q, k = rope(q, theta), rope(k, theta)
        rep = H // KV
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, -1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + lin(o, l, 'o_proj')
        h = rms_norm(x, W[p + 'post_attention_layernorm.weight'], eps)
        x = x + lin(torch.nn.functional.silu(lin(h, l, 'gate_proj')) * lin(h, l, 'up_proj'), l, 'down_proj')
    x = rms_norm(x, W['model.norm.weight'], eps)
    head = W['model.embed_tokens.weight' if c['tie_word_embeddings'] else 'lm_head.weight']
    y = x @ head.T
    return y[0] if single else y


def compute(case_dir):
    with open(os.path.join(case_dir, 'config.json')) as f:
        c = json.load(f)
    with open(os.path.join(case_dir, 'adapter', 'adapter_config.json')) as f:
        ac = json.load(f)
    with open(os.path.join(case_dir, 'batches.json')) as f:
        batches = json.load(f)
    W = {k: torch.tensor(v) for k, v in read_safetensors(os.path.join(case_dir, 'model.safetensors')).items()}
    raw = read_safetensors(os.path.join(case_dir, 'adapter', 'adapter_model.safetensors'))
    scale = ac['lora_alpha'] / (math.sqrt(ac['r']) if ac.get('use_rslora') else ac['r'])
    out = {}
    names = []  # LoRA matrices in a fixed order (layer, target order, A then B)
    for l in range(c['num_hidden_layers']):
        for t in TARGET_ORDER:
            key = f'base_model.model.{module_path(l, t)}'
            if key + '.lora_A.weight' in raw:
                names += [key + '.lora_A.weight', key + '.lora_B.weight']
    seqs = batches[0]['seqs']
    for i, s in enumerate(seqs):
        with torch.no_grad():
            out[f'logits.{i}'] = forward(c, W, {}, 0.0, s).numpy()
            lora = {module_path_of(n): (torch.tensor(raw[n]), torch.tensor(raw[n.replace('lora_A', 'lora_B')])) for n in names if 'lora_A' in n}
            out[f'logits_lora.{i}'] = forward(c, W, lora, scale, s).numpy()
    scalars = {}
    for b in batches:
        params = {n: torch.tensor(raw[n], requires_grad=True) for n in names}
        lora = {module_path_of(n): (params[n], params[n.replace('lora_A', 'lora_B')]) for n in names if 'lora_A' in n}
        total, wsum = torch.zeros((), dtype=torch.float64), 0.0
        for s, w in zip(b['seqs'], b['weights']):
            assert w[0] == 0.0
            lp = torch.log_softmax(forward(c, W, lora, scale, s), -1)
            for t in range(1, len(s)):
                if w[t] != 0.0:
                    total = total - w[t] * lp[t - 1, s[t]]
                    wsum += w[t]
        loss = total / wsum if b['norm'] == 'weightSum' else total
        loss.backward()
        scalars[f"loss.{b['name']}"] = float(loss)
        for n in names:
            out[f"grad.{b['name']}.{n}"] = params[n].grad.numpy()
    return out, scalars, names


def module_path_of(name):
    return name[len('base_model.model.'):].rsplit('.lora_', 1)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--check', action='store_true', help='recompute and compare with the committed outputs')
    args = ap.parse_args()
    torch.set_grad_enabled(True)
    for name, spec in CASES.items():
        d = os.path.join(ROOT, name)
        if not args.check:
            os.makedirs(d, exist_ok=True)
            make_case(name, spec, d)
        out, scalars, names = compute(d)
        if args.check:
            old = read_safetensors(os.path.join(d, 'expected.safetensors'))
            worst = max(float(np.abs(old[k] - v.astype(np.float32)).max()) for k, v in out.items())
            print(f'{name}: max |new - committed| = {worst:.3g}')
            continue
        write_safetensors(os.path.join(d, 'expected.safetensors'), out)
        with open(os.path.join(d, 'expected.json'), 'w') as f:
            json.dump(dict(scalars=scalars, lora_order=names, torch=torch.__version__,
                           note='float64 PyTorch reference (scripts/torch_reference.py)'), f, indent=2)
        print(f'{name}: {len(out)} arrays, losses {scalars}')


if __name__ == '__main__':
    sys.exit(main())
