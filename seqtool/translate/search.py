"""Greedy and beam search for encoder–decoder models, batched over sentences.

The model is driven through two calls (seqtool.nn.seq2seq.Seq2Seq has them):
  model.start(src, src_len) -> state          state.select(index) reorders/repeats its rows
  model.step(tokens, state) -> (logits (n, vocab), state, attention (n, src_steps) or None)

A hypothesis' score is the sum of its token log-probabilities (its <eos> included); beam search
ranks finished hypotheses by score / length**alpha, where length counts the generated tokens with
<eos>. Hypotheses cut off by max_len have length max_len and no <eos>.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without <eos>
    score: float  # sum of log-probabilities
    normalized: float  # score / length**alpha (== score for greedy)
    finished: bool  # ended with <eos> (False: cut off at max_len)
    attention: list[list[float]] | None = field(default=None, repr=False)  # per output step, over source


@torch.no_grad()
def greedy(model, src, src_len, bos: int, eos: int, max_len: int, attention: bool = False) -> list[Hypothesis]:
    """Arg-max decoding; a sentence stops at its first <eos>, the batch when all have stopped."""
    n = src.size(0)
    state = model.start(src, src_len)
    tokens = torch.full((n,), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    scores = torch.zeros(n, device=src.device)
    steps, weights = [], []
    for _ in range(max_len):
        logits, state, attn = model.step(tokens, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        best, tokens = logp.max(dim=-1)
        scores += torch.where(done, torch.zeros_like(best), best)
        steps.append(torch.where(done, torch.full_like(tokens, eos), tokens))
        if attention and attn is not None:
            weights.append(attn)
        done |= tokens == eos
        if bool(done.all()):
            break
    out_ids = torch.stack(steps, dim=1).tolist()
    att = torch.stack(weights, dim=1).tolist() if weights else None  # (n, t, src)
    hyps = []
    for i, (ids, score) in enumerate(zip(out_ids, scores.tolist())):
        finished = eos in ids
        ids = ids[: ids.index(eos)] if finished else ids
        hyp_att = att[i][: len(ids) + finished] if att is not None else None
        hyps.append(Hypothesis(ids, score, score, finished, hyp_att))
    return hyps


@torch.no_grad()
def beam_search(
    model,
    src,
    src_len,
    bos: int,
    eos: int,
    max_len: int,
    beam: int = 4,
    length_penalty: float = 0.0,
    nbest: int = 1,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Keep the `beam` best partial hypotheses per sentence; return each sentence's `nbest` best
    finished ones, best first. <eos> candidates are accepted only from the top `beam` ranks, so
    beam=1 is exactly greedy. A sentence stops once its nbest-th finished hypothesis beats what
    any live one could still reach (a live score can only fall, its length only grow to max_len)."""
    if beam < 1 or not 1 <= nbest <= beam:
        raise ValueError(f"need beam >= 1 and 1 <= nbest <= beam, got beam={beam}, nbest={nbest}")
    n, k, device = src.size(0), beam, src.device
    state = model.start(src, src_len).select(torch.arange(n, device=device).repeat_interleave(k))
    tokens = torch.full((n * k,), bos, dtype=torch.long, device=device)
    scores = torch.full((n, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not repeat it
    history = torch.empty((n * k, 0), dtype=torch.long, device=device)
    att_history = None
    finished: list[list[Hypothesis]] = [[] for _ in range(n)]
    done = [False] * n

    def norm(length: int) -> float:
        return float(length) ** length_penalty

    for t in range(max_len):
        logits, state, attn = model.step(tokens, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        vocab = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(n, k * vocab)
        top_scores, top_ids = cand.topk(min(2 * k, k * vocab), dim=-1)
        rows_l, toks_l, scores_l = (top_ids // vocab).tolist(), (top_ids % vocab).tolist(), top_scores.tolist()

        keep_rows, keep_toks, keep_scores = [], [], []
        for b in range(n):
            alive = []
            if not done[b]:
                for rank, (row, tok, sc) in enumerate(zip(rows_l[b], toks_l[b], scores_l[b])):
                    if sc == float("-inf"):
                        break
                    if tok == eos:
                        if rank < k:
                            finished[b].append(_hypothesis(history, att_history, b * k + row, sc, sc / norm(t + 1), True, attn if attention else None))
                        continue
                    alive.append((row, tok, sc))
                    if len(alive) == k:
                        break
            done[b] = done[b] or _settled(finished[b], alive, nbest, (norm(min(t + 2, max_len)), norm(max_len)))
            if done[b]:
                alive = []
            alive += [(0, eos, float("-inf"))] * (k - len(alive))  # dead filler rows
            for row, tok, sc in alive:
                keep_rows.append(b * k + row)
                keep_toks.append(tok)
                keep_scores.append(sc)
        if all(done):
            break
        index = torch.tensor(keep_rows, device=device)
        tokens = torch.tensor(keep_toks, device=device)
        scores = torch.tensor(keep_scores, device=device).view(n, k)
        history = torch.cat([history.index_select(0, index), tokens.unsqueeze(1)], dim=1)
        if attention and attn is not None:
            step_att = attn.index_select(0, index).unsqueeze(1)
            att_history = step_att if att_history is None else torch.cat([att_history.index_select(0, index), step_att], dim=1)
        state = state.select(index)

    results = []
    for b in range(n):
        hyps = finished[b]
        if len(hyps) < nbest:  # cut off at max_len: the best live ones count too
            flat = scores[b].tolist()
            for row in sorted(range(k), key=lambda r: -flat[r]):
                if flat[row] > float("-inf") and len(hyps) < nbest:
                    hyps.append(_hypothesis(history, att_history, b * k + row, flat[row], flat[row] / norm(max_len), False, None))
        results.append(sorted(hyps, key=lambda h: -h.normalized)[:nbest])
    return results


def _settled(finished: list[Hypothesis], alive: list, nbest: int, norms: tuple[float, float]) -> bool:
    """True when no live hypothesis can still enter the nbest finished ones."""
    if len(finished) < nbest or not alive:
        return len(finished) >= nbest or not alive
    worst_kept = sorted((h.normalized for h in finished), reverse=True)[nbest - 1]
    best_alive = max(sc for _, _, sc in alive)
    # a live score can only fall; its final length lies between the next step and max_len, and
    # dividing a score <= 0 by length**alpha is largest at one end of that range
    bound = max(best_alive / norms[0], best_alive / norms[1])
    return worst_kept >= bound


def _hypothesis(history, att_history, row, score, normalized, finished, last_attn) -> Hypothesis:
    tokens = history[row].tolist()
    att = None
    if att_history is not None or last_attn is not None:
        steps = att_history[row].tolist() if att_history is not None else []
        if finished and last_attn is not None:
            steps = steps + [last_attn[row].tolist()]
        att = steps
    return Hypothesis(tokens, score, normalized, finished, att)
