"""A small Llama-style decoder in plain torch, with exact parameter and FLOP counts.

RMSNorm, rotary positions, SwiGLU MLP, no biases, `scaled_dot_product_attention` (bf16 on
CPU: batched matmuls, see `causal_attention`), untied input embedding and output head. The
parameter conventions matter for the science (published exponents move by 0.1-0.3 with
them), so they are computed here from the shape and checked against the module's real
tensors in the tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from skillscale.model.shapes import ModelShape, flops_per_token, param_counts  # noqa: F401  (re-exported)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight).type_as(x)


def rotary_tables(seq_len: int, d_head: int, base: float = 10000.0):
    """cos and sign-folded sin, (T, d_head) each, so that rotating is x * cos + swap(x) * sin."""
    inv = 1.0 / base ** (torch.arange(0, d_head, 2).float() / d_head)
    freqs = torch.outer(torch.arange(seq_len).float(), inv)  # (T, d_head/2)
    cos, sin = torch.cos(freqs), torch.sin(freqs)
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rotary(x, cos, sin):
    """Rotate the pairs (x1, x2) of the two halves of the last dim: (x1 c - x2 s, x2 c + x1 s).

    x: (B, T, ..., d_head); cos, sin: (T, ..., d_head) from `rotary_tables`, cut to T. The sign
    lives in the sin table, so this is x * cos + (x2, x1) * sin: one copy, two products, a sum.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([x2, x1], dim=-1) * sin


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(d_head) + causal mask) v for (B, H, T, d_head) inputs.

    `scaled_dot_product_attention`, except in bf16 on CPU: there torch's flash kernel's
    backward is ~5x slower than two batched matmuls around a softmax (torch 2.13, d_head 20).
    That path rounds scores to bf16 as any unfused attention does; logits and gradients stay
    as close to the fp32 model's as the flash kernel's (checked at the default largest cell).
    """
    if q.dtype != torch.bfloat16 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    B, H, T, D = q.shape
    mask = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    scores = torch.baddbmm(mask, q.reshape(B * H, T, D), k.reshape(B * H, T, D).transpose(1, 2), alpha=D**-0.5)
    return torch.bmm(scores.softmax(dim=-1), v.reshape(B * H, T, D)).view(B, H, T, D)


class Block(nn.Module):
    def __init__(self, s: ModelShape):
        super().__init__()
        d = s.d_model
        self.n_heads = s.n_heads
        self.attn_norm = RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.mlp_norm = RMSNorm(d)
        self.gate_up = nn.Linear(d, 2 * s.d_ff, bias=False)
        self.down = nn.Linear(s.d_ff, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, d = x.shape
        # q and k rotated together, in the (B, T, 2, H, d_head) layout the fused qkv gives
        qk, v = self.qkv(self.attn_norm(x)).view(B, T, 3, self.n_heads, -1).split([2, 1], dim=2)
        q, k = apply_rotary(qk, cos.to(qk.dtype), sin.to(qk.dtype)).transpose(1, 3).unbind(2)
        y = causal_attention(q, k, v.squeeze(2).transpose(1, 2))
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, d))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Decoder(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        if shape.d_model % shape.n_heads or shape.d_head % 2:
            raise ValueError(f"model shape {shape}: d_model must split into n_heads heads of even width")
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self.norm = RMSNorm(shape.d_model)
        self.head = nn.Linear(shape.d_model, shape.vocab_size, bias=False)
        cos, sin = rotary_tables(shape.seq_len, shape.d_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        # GPT-2 style: scale residual-branch outputs by depth so deeper ladders start stable
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * shape.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def features(self, idx):
        """The normalised last hidden state, (B, T, d_model): what the output head reads."""
        x = self.embed(idx)
        T = idx.shape[1]
        cos, sin = self.cos[:T, None, None, :], self.sin[:T, None, None, :]  # (T, 1, 1, d_head)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        return self.norm(x)

    def forward(self, idx):
        return self.head(self.features(idx))
