"""Reference: the classic char-level GRU language model as a plain PyTorch loop.

Imports nothing from seqtool on purpose: it is the yardstick the trainer is measured against.
One-hot inputs, GRU 256, SGD lr 1, clip 1, batch 32 x 35 steps, sequential partitioning with the
state carried and detached; the last 10% of the Time Machine held out. Prints one JSON line.
"""

import json
import math
import os
import re
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def corpus_path() -> Path:
    for d in (os.environ.get("SEQTOOL_MIRROR"), Path(__file__).resolve().parents[2] / "shared" / "corpora"):
        if d and (Path(d) / "timemachine.txt").is_file():
            return Path(d) / "timemachine.txt"
    sys.exit("timemachine.txt not found (set SEQTOOL_MIRROR)")


def main(budget: float, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    text = re.sub("[^A-Za-z]+", " ", corpus_path().read_text()).lower().strip()
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    n_val = round(len(ids) * 0.1)
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    V, H, B, T = len(chars), 256, 32, 35
    gru, head = nn.GRU(V, H), nn.Linear(H, V)
    params = list(gru.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=1.0)

    def forward(x, state):
        out, state = gru(F.one_hot(x, V).float(), state)
        return head(out), state

    @torch.no_grad()
    def val_ppl():
        state, total = None, 0.0
        for s in range(0, len(val_ids) - 1, 512):
            x, y = val_ids[s : s + 512], val_ids[s + 1 : s + 513]
            logits, state = forward(x[: len(y), None], state)
            total += F.cross_entropy(logits.view(-1, V), y, reduction="sum").item()
        return math.exp(total / (len(val_ids) - 1))

    start, trained, tokens, best, epoch = time.perf_counter(), 0.0, 0, float("inf"), 0
    while time.perf_counter() - start < budget:
        offset = int(torch.randint(0, T, (1,)))
        n = ((len(train_ids) - offset - 1) // B) * B
        xs = train_ids[offset : offset + n].view(B, -1).t()
        ys = train_ids[offset + 1 : offset + 1 + n].view(B, -1).t()
        state = None
        for s in range(0, xs.shape[0] - T + 1, T):
            t0 = time.perf_counter()
            logits, state = forward(xs[s : s + T], state)
            state = state.detach()
            loss = F.cross_entropy(logits.view(-1, V), ys[s : s + T].reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            trained += time.perf_counter() - t0
            tokens += B * T
            if time.perf_counter() - start >= budget:
                break
        epoch += 1
        best = min(best, val_ppl())
    print(json.dumps({
        "name": "plain loop (classic)", "tokens_per_s": tokens / trained, "val_ppl": best, "epochs": epoch,
        "seconds": time.perf_counter() - start, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 120.0, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
