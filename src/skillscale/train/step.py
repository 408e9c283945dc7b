"""One optimizer step's pieces: learning-rate schedules, AdamW, the output head and its loss
as one autograd function, and `train_step` (the speed benchmarks time these same pieces)."""

from __future__ import annotations

import contextlib
import math

import torch

from skillscale.model.decoder import Decoder


# -- learning-rate schedules ------------------------------------------------------------------
def lr_cosine(step: int, steps: int, warmup: int, peak: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def lr_wsd(step: int, warmup: int, branch: int | None, steps: int, peak: float, min_ratio: float) -> float:
    """Warmup, constant peak, then from `branch` a 1-sqrt decay to min_ratio at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if branch is None or step < branch:
        return peak
    t = (step - branch + 1) / max(1, steps - branch)
    return peak * (min_ratio + (1 - min_ratio) * (1 - math.sqrt(min(1.0, t))))


# -- the pieces of one optimizer step (the benchmark reuses them) -------------------------------
class AdamW:
    """AdamW over parameter groups, stepped by torch's fused kernel: the very update
    `torch.optim.AdamW(fused=True)` makes, bit for bit (tested). Not torch.optim itself: its
    constructor imports torch._dynamo, about a second of every job's start-up on CPU."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple[float, float], eps: float = 1e-8):
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps, **g, "params": list(g["params"])} for g in groups]
        params = [p for g in self.param_groups for p in g["params"]]
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]

    def _slices(self):
        i = 0
        for g in self.param_groups:
            yield g, slice(i, i + len(g["params"]))
            i += len(g["params"])

    @torch.no_grad()
    def step(self) -> None:
        for g, sl in self._slices():
            params = [p for p in g["params"] if p.grad is not None]
            if len(params) != len(g["params"]):
                raise RuntimeError("AdamW: every parameter needs a gradient (a model part the loss never reaches?)")
            steps = self.steps[sl]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(
                params,
                [p.grad for p in params],
                self.exp_avg[sl],
                self.exp_avg_sq[sl],
                [],
                steps,
                amsgrad=False,
                lr=g["lr"],
                beta1=g["betas"][0],
                beta2=g["betas"][1],
                weight_decay=g["weight_decay"],
                eps=g["eps"],
                maximize=False,
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                p.grad = None

    def state_dict(self) -> dict:
        return {
            "exp_avg": self.exp_avg,
            "exp_avg_sq": self.exp_avg_sq,
            "steps": self.steps,
            "lr": [g["lr"] for g in self.param_groups],
        }

    def load_state_dict(self, state: dict) -> None:
        if "exp_avg" not in state or len(state["exp_avg"]) != len(self.exp_avg):
            raise ValueError("optimizer state from another model or an older skillscale; delete the checkpoint")
        for mine, saved in (
            (self.exp_avg, state["exp_avg"]),
            (self.exp_avg_sq, state["exp_avg_sq"]),
            (self.steps, state["steps"]),
        ):
            for a, b in zip(mine, saved):
                a.copy_(b)
        for g, lr in zip(self.param_groups, state["lr"]):
            g["lr"] = lr


def build_optimizer(model: torch.nn.Module, tc: dict, peak: float, device: str) -> AdamW:
    """AdamW with weight decay on matrices only (not norms, not the embedding); fused kernel."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    return AdamW(
        [{"params": decay, "weight_decay": tc["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak,
        betas=(tc["beta1"], tc["beta2"]),
    )


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of the logits h W^T against targets y: the output head and the loss
    as one function whose backward reuses the softmax its forward computed.

    The same numbers as `cross_entropy(h @ W.T, y)` up to float rounding, with less work over
    the (tokens x vocab) logits, which at the default's widths cost more than any matmul:
    torch's log-softmax backward computes the exponentials again and nll_loss's backward fills
    a zero tensor of that size; here backward turns the saved softmax into the logits' gradient
    in place. fp32 only (an autocast step keeps the plain loss); one backward per forward."""

    @staticmethod
    def forward(ctx, h, w, y):
        z = h @ w.t()  # (n, V) logits
        z -= z.amax(dim=-1, keepdim=True)
        z_target = z.gather(1, y[:, None])
        p = z.exp_()
        total = p.sum(dim=-1, keepdim=True)
        loss = (total.log() - z_target).mean()
        p /= total
        ctx.save_for_backward(h, w, y, p)
        return loss

    @staticmethod
    def backward(ctx, grad):
        h, w, y, p = ctx.saved_tensors
        # d loss / d z = (softmax - onehot) / n, made in the saved softmax itself
        p[torch.arange(y.numel(), device=y.device), y] -= 1.0
        p *= grad / y.numel()
        return p @ w, p.t() @ h, None


def next_token_loss(fwd, batch, fused: bool = False):
    """Mean cross-entropy of each token given the ones before it (fwd: batch -> logits).
    fused (a plain Decoder in fp32): the head and the loss in one `HeadCrossEntropy`."""
    x, y = batch[:, :-1], batch[:, 1:].flatten()
    if fused and not torch.is_autocast_enabled(batch.device.type):
        return HeadCrossEntropy.apply(fwd.features(x).flatten(0, 1), fwd.head.weight, y)
    return torch.nn.functional.cross_entropy(fwd(x).float().flatten(0, 1), y)


def use_compile(tc: dict, device: str) -> bool:
    """`train.compile`: auto compiles on CUDA only. On 2 CPU cores compiling buys 8-20% a step,
    but every workflow job compiles afresh (per-job inductor cache), ~11 s: a loss for short jobs."""
    mode = tc.get("compile", "auto")
    return mode == "always" or (mode == "auto" and device == "cuda")


def loss_fn(fwd, compiled: bool, fused: bool = True):
    """batch -> loss. Compiled, model and loss are one graph, so the log-softmax fuses with the
    head's output (compiling the model alone leaves the loss's three passes over the logits).
    Eager, a plain Decoder's head and loss are `HeadCrossEntropy` (fused=False: torch's
    cross_entropy over the logits, the trainer before it; DDP's wrapper always takes that path,
    its forward being what synchronises gradients)."""
    if compiled:
        return torch.compile(lambda batch: next_token_loss(fwd, batch))
    fused = fused and isinstance(fwd, Decoder)
    return lambda batch: next_token_loss(fwd, batch, fused)


def train_step(loss_of, model, opt, batch, tc: dict, lr: float, micro_rows: int | None = None, no_sync=None):
    """One AdamW step at learning rate `lr`; returns the (detached) loss. loss_of: `loss_fn`.

    micro_rows (resources.micro_batch_rows): the batch goes through forward and backward
    that many rows at a time, gradients accumulating (each part's mean loss weighted by its
    rows), so a batch too large for the device's memory gives the same step up to float
    summation order. no_sync (DDP's): gradients are averaged across ranks once, at the last part."""
    for g in opt.param_groups:
        g["lr"] = lr
    autocast = torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=tc["precision"] == "bf16")
    if micro_rows and micro_rows < batch.shape[0]:
        parts, loss = batch.split(micro_rows), 0.0
        for i, part in enumerate(parts):
            sync = i == len(parts) - 1 or no_sync is None
            with contextlib.nullcontext() if sync else no_sync(), autocast:
                part_loss = loss_of(part) * (part.shape[0] / batch.shape[0])
            part_loss.backward()
            loss = loss + part_loss.detach()
    else:
        with autocast:
            loss = loss_of(batch)
        loss.backward()
    if tc["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()
