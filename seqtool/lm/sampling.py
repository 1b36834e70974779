"""Generation from a language model: temperature, top-k, top-p (nucleus) or greedy choice.

The recurrent state is kept between steps, so after warming up on the prefix each new token costs
exactly one model step, never a re-run of the prefix.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Scale by 1/temperature, keep the k best and/or the smallest set with probability >= top_p."""
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep tokens until the mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def choose(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None, **filters) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    logits = logits.float()
    # shift first: softmax is unchanged, and a tiny temperature then gives -inf, never inf - inf = nan
    probs = filter_logits(logits - logits.max(-1, keepdim=True).values, **filters).softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def sample(
    model: nn.Module,
    prefix: Sequence[int],
    length: int,
    *,
    num: int = 1,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    banned: Sequence[int] = (),
    first_token_probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device = torch.device("cpu"),
    on_step: Callable[[torch.Tensor], None] | None = None,
) -> list[list[int]]:
    """`num` continuations of `prefix`, `length` new tokens each, generated in parallel.

    An empty prefix starts from a token drawn from `first_token_probs` (the unigram distribution).
    `on_step` receives each step's new tokens (num,) as they are chosen, for streaming.
    """
    model.eval()
    if not prefix:
        if first_token_probs is None:
            raise ValueError("an empty prefix needs first_token_probs")
        first = torch.multinomial(first_token_probs.float().expand(num, -1), 1, generator=generator).view(1, num)
        if on_step is not None:
            on_step(first.view(-1))
        prefix_t = first.to(device)
    else:
        prefix_t = torch.tensor(list(prefix), dtype=torch.long, device=device)[:, None].expand(-1, num)
    logits, state = model(prefix_t, None)
    last = logits[-1]
    out = [] if prefix else [first.view(-1).tolist()]
    generated = []
    ban = torch.tensor(list(banned), dtype=torch.long, device=device)
    for _ in range(length):
        if ban.numel():
            last = last.index_fill(-1, ban, float("-inf"))
        token = choose(last, greedy, generator, temperature=temperature, top_k=top_k, top_p=top_p)
        generated.append(token)
        if on_step is not None:
            on_step(token)
        logits, state = model(token[None, :], state)
        last = logits[-1]
    columns = torch.stack(generated, dim=0).t().tolist() if generated else [[] for _ in range(num)]
    if out:
        return [[first_tok] + col for first_tok, col in zip(out[0], columns)]
    return columns


def check_sampling(prefix: str, length: int, num: int, seed: int | None, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """The sampling options make sense (refused before a model is loaded)."""
    import math

    from seqtool.core.errors import UsageError

    if length < 0 or num < 1:
        raise UsageError("--length must be >= 0 and --num >= 1")
    if seed is not None and not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2**63), got {seed}")

    if not math.isfinite(temperature) or temperature <= 0:
        raise UsageError("--temperature must be a finite number > 0 (use --greedy for the most likely token)")
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in argv arrive as lone surrogates
        raise UsageError("--prefix has bytes that are not valid text in this locale's encoding") from None
    if top_k is not None and top_k < 1:
        raise UsageError("--top-k must be >= 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")


def write_samples(r, prefix: str, length: int, write: Callable[[str], None], *, num: int = 1, seed: int | None = None,
                  as_json: bool = False, **choice) -> None:
    """`seqtool sample`'s output through `write`: one sample per line (a line end inside a sample
    reads as a space), or one JSON object per line; a single plain sample is written as it is
    generated, piece by piece."""
    import json

    if num == 1 and not as_json:
        r.task.generate(r.model, prefix, length, seed=seed, device=r.device, on_text=lambda piece: write(piece.replace("\n", " ")), **choice)
        write("\n")
        return
    for i, text in enumerate(r.task.generate(r.model, prefix, length, num=num, seed=seed, device=r.device, **choice)):
        write((json.dumps({"index": i, "prefix": prefix, "text": text}) if as_json else text.replace("\n", " ")) + "\n")
