"""Reference: the classic small word-level LSTM language model as a plain PyTorch loop.

Imports nothing from seqtool on purpose: it is the yardstick the word recipe is measured against.
The benchmark conventions of pytorch/examples' word_language_model: each line's words then <eos>,
the vocabulary from train.txt only (a word it lacks reads as <unk>). The small recipe of Zaremba et
al. (2014): 2 x 200 LSTM, 200-d embeddings, weights uniform in +-0.1, no dropout, 35-step BPTT with
the state carried and detached, batch 20, SGD lr 1 with clipping at 5; the lr halves after an epoch
whose validation perplexity did not improve. Trains for BUDGET seconds (validating at each epoch end
and at the budget), then scores test.txt with the best validated weights. Prints one JSON line.

    python bench/plain_word_lm.py DIR [BUDGET_S] [THREADS]
"""

import copy
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def read_words(path: Path) -> list[str]:
    words = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            words += line.split() + ["<eos>"]
    return words


class Model(nn.Module):
    def __init__(self, vocab: int, size: int = 200, layers: int = 2):
        super().__init__()
        self.embed, self.lstm, self.head = nn.Embedding(vocab, size), nn.LSTM(size, size, layers), nn.Linear(size, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def batchify(ids: torch.Tensor, batch: int) -> torch.Tensor:
    n = ids.numel() // batch
    return ids[: n * batch].view(batch, n).t().contiguous()


@torch.no_grad()
def perplexity(model: Model, data: torch.Tensor, bptt: int = 35) -> float:
    model.eval()
    total, state = 0.0, None
    for i in range(0, data.shape[0] - 1, bptt):
        n = min(bptt, data.shape[0] - 1 - i)
        logits, state = model(data[i : i + n], state)
        total += F.cross_entropy(logits.flatten(0, 1), data[i + 1 : i + 1 + n].flatten(), reduction="sum").item()
    model.train()
    return math.exp(total / ((data.shape[0] - 1) * data.shape[1]))


def main(root: Path, budget: float, threads: int) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train_words = read_words(root / "train.txt")
    itos = ["<unk>"] + sorted({w for w in train_words if w != "<unk>"}, key=lambda w: w)
    stoi = {w: i for i, w in enumerate(itos)}
    encode = lambda words: torch.tensor([stoi.get(w, 0) for w in words], dtype=torch.long)  # noqa: E731
    B, T = 20, 35
    train = batchify(encode(train_words), B)
    valid, test = batchify(encode(read_words(root / "valid.txt")), 10), batchify(encode(read_words(root / "test.txt")), 1)
    model = Model(len(itos))
    lr, best, best_state = 1.0, math.inf, None
    start, trained, tokens, epochs, validations = time.perf_counter(), 0.0, 0, 0.0, 0
    out_of_time = False
    while not out_of_time:
        state, steps = None, (train.shape[0] - 1) // T
        for k, i in enumerate(range(0, steps * T, T)):
            t0 = time.perf_counter()
            if state is not None:
                state = tuple(s.detach() for s in state)
            logits, state = model(train[i : i + T], state)
            loss = F.cross_entropy(logits.flatten(0, 1), train[i + 1 : i + 1 + T].flatten())
            model.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            trained += time.perf_counter() - t0
            tokens += T * B
            if time.perf_counter() - start >= budget:
                out_of_time, epochs = True, epochs + (k + 1) / steps
                break
        else:
            epochs += 1
        val = perplexity(model, valid)
        validations += 1
        if val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
        else:
            lr /= 2
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "name": "plain loop (word)", "tokens_per_s": tokens / trained, "epochs": epochs, "val_ppl": best,
        "test_ppl": perplexity(model, test), "seconds": seconds, "vocab": len(itos),
        "peak_rss_mb": usage.ru_maxrss / 1024, "minor_faults": usage.ru_minflt, "system_s": usage.ru_stime,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 600.0, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
