import pytest
import torch

from seqtool.nn.seq2seq import MeanOfMembers, Seq2Seq, Seq2SeqEnsemble, masked_cross_entropy
from seqtool.translate.pairs import BOS_ID, EOS_ID, PAD_ID, decoder_input
from seqtool.translate.search import beam_search, greedy


def _batch(n=5, steps=7, vocab=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (n,), generator=gen)
    src = torch.randint(4, vocab, (n, steps), generator=gen)
    src[torch.arange(steps).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD_ID
    tgt = torch.randint(4, vocab, (n, steps), generator=gen)
    return src, lengths, tgt


CONFIGS = [
    dict(cell="gru", attention="none"),
    dict(cell="gru", attention="additive"),
    dict(cell="lstm", attention="additive", bidirectional=True),
    dict(cell="rnn", attention="none", bidirectional=True),
    dict(cell="lstm", attention="none"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_teacher_forcing_equals_step_by_step_decoding(config):
    torch.manual_seed(0)
    model = Seq2Seq(12, 13, embed=8, hidden=16, layers=2, **config).eval()
    src, lengths, tgt = _batch()
    with torch.no_grad():
        logits = model(src, lengths, tgt)
        state, steps = model.start(src, lengths), []
        for t in range(tgt.size(1)):
            step_logits, state, weights = model.step(tgt[:, t], state)
            steps.append(step_logits)
    assert logits.shape == (5, 7, 13)
    torch.testing.assert_close(torch.stack(steps, 1), logits, atol=1e-5, rtol=1e-5)
    assert (weights is None) == (config["attention"] == "none")


@pytest.mark.parametrize("attention", ["none", "additive"])
def test_an_ensemble_decodes_with_its_members_mean_probability(attention):
    """Teacher forcing and step-by-step decoding both give log(mean of the members' softmaxes); each
    member's own logits stay available for training; the attention is the members' mean; search
    drives the ensemble unchanged (beam 1 is greedy) and rows reorder alike in every member."""
    torch.manual_seed(0)
    members = [Seq2Seq(12, 13, embed=8, hidden=16, layers=1, cell="gru", attention=attention) for _ in range(3)]
    ensemble = Seq2SeqEnsemble(members).eval()
    src, lengths, tgt = _batch()
    with torch.no_grad():
        mean = torch.stack([member(src, lengths, tgt).softmax(-1) for member in members]).mean(0)
        torch.testing.assert_close(ensemble(src, lengths, tgt).exp(), mean, atol=1e-6, rtol=1e-5)
        assert ensemble(src, lengths, tgt, per_member=True).shape == (3, 5, 7, 13)
        state, steps = ensemble.start(src, lengths), []
        order = torch.tensor([4, 0, 0, 2, 1])
        for t in range(tgt.size(1)):
            logp, state, weights = ensemble.step(tgt[:, t], state)
            steps.append(logp)
        torch.testing.assert_close(torch.stack(steps, 1).exp(), mean, atol=1e-6, rtol=1e-5)
        if attention == "additive":
            alone = [member.step(tgt[:, 0], member.start(src, lengths))[2] for member in members]
            torch.testing.assert_close(ensemble.step(tgt[:, 0], ensemble.start(src, lengths))[2], torch.stack(alone).mean(0))
        else:
            assert weights is None
        moved = ensemble.start(src, lengths).select(order)
        again = ensemble.step(tgt[order, 0], moved)[0]
        torch.testing.assert_close(again, ensemble.step(tgt[:, 0], ensemble.start(src, lengths))[0][order])
        assert [h.tokens for h in greedy(ensemble, src, lengths, BOS_ID, EOS_ID, 6)] == \
            [b[0].tokens for b in beam_search(ensemble, src, lengths, BOS_ID, EOS_ID, 6, beam=1)]
        one = MeanOfMembers(members[:1])
        torch.testing.assert_close(one.step(tgt[:, 0], one.start(src, lengths))[0],
                                   members[0].step(tgt[:, 0], members[0].start(src, lengths))[0].log_softmax(-1))
    assert not ensemble.training and MeanOfMembers(members).train().training and all(m.training for m in members)


@pytest.mark.parametrize("attention", ["none", "additive"])
def test_tied_weights_score_the_decoder_output_against_the_target_embedding(attention):
    """--tie-weights: logits = project(output) . E_tgt^T + b with E_tgt the decoder's input embedding
    (one tensor, learning from both uses); shared embeddings make the source read that tensor too."""
    torch.manual_seed(0)
    model = Seq2Seq(13, 13, embed=8, hidden=16, layers=1, attention=attention, tie_weights=True, share_embeddings=True)
    untied = Seq2Seq(13, 13, embed=8, hidden=16, layers=1, attention=attention)
    assert model.out.embedding.weight is model.tgt_embed.weight is model.src_embed.weight
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == \
        13 * 8 + untied.out.weight.numel() - model.out.project.weight.numel() - model.out.project.bias.numel()
    x = torch.randn(3, model.out.project.in_features)
    torch.testing.assert_close(model.out(x), model.out.project(x) @ model.tgt_embed.weight.T + model.out.bias)
    assert model.out.out_features == 13
    src, lengths, tgt = _batch(vocab=13)
    model(src, lengths, tgt).logsumexp(-1).sum().backward()
    grad = model.tgt_embed.weight.grad
    assert grad is not None and grad[[0, 2, 3]].abs().min() > 0  # rows no input reads (ids 0, 2, 3) learn through the output layer
    with pytest.raises(ValueError, match="one vocabulary"):
        Seq2Seq(12, 13, embed=8, hidden=16, tie_weights=True, share_embeddings=True)


@pytest.mark.parametrize("config", CONFIGS[1:3], ids=["gru", "bilstm"])
def test_source_padding_changes_nothing(config):
    """Packed encoding and masked attention: what lies past a source's valid length is ignored."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 13, embed=8, hidden=16, layers=2, **config).eval()
    src, lengths, tgt = _batch()
    noisy = src.clone()
    noisy[torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)] = 5
    with torch.no_grad():
        torch.testing.assert_close(model(noisy, lengths, tgt), model(src, lengths, tgt))
        _, _, weights = model.step(tgt[:, 0], model.start(src, lengths))
    past = torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)
    assert weights[past].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_scratch_stacks_compute_what_the_fused_ones_do(cell):
    """The scratch encoder reads each length group unpadded instead of a packed batch: same result."""
    torch.manual_seed(0)
    fused = Seq2Seq(12, 13, embed=8, hidden=16, layers=2, cell=cell, bidirectional=True, attention="additive").eval()
    scratch = Seq2Seq(12, 13, embed=8, hidden=16, layers=2, cell=cell, bidirectional=True, attention="additive", impl="scratch").eval()
    scratch.load_state_dict(fused.state_dict())
    src, lengths, tgt = _batch()
    with torch.no_grad():
        torch.testing.assert_close(scratch(src, lengths, tgt), fused(src, lengths, tgt), atol=1e-5, rtol=1e-4)


def test_masked_loss_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 9)
    target = torch.randint(0, 9, (3, 5))
    lengths = torch.tensor([5, 2, 3])
    loss, count = masked_cross_entropy(logits, target, lengths)
    changed_logits, changed_target = logits.clone(), target.clone()
    for row, n in enumerate(lengths.tolist()):
        changed_logits[row, n:] = torch.randn(5 - n, 9) * 10
        changed_target[row, n:] = (changed_target[row, n:] + 1) % 9
    assert masked_cross_entropy(changed_logits, changed_target, lengths)[0] == pytest.approx(loss.item())
    assert int(count) == 10
    # and it is the plain mean over the valid tokens
    picked = torch.cat([logits[r, :n] for r, n in enumerate(lengths.tolist())])
    wanted = torch.cat([target[r, :n] for r, n in enumerate(lengths.tolist())])
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(picked, wanted).item(), rel=1e-6)
    # changing a valid position does change it
    changed_target[0, 0] = (changed_target[0, 0] + 1) % 9
    assert masked_cross_entropy(logits, changed_target, lengths)[0].item() != pytest.approx(loss.item())


def test_label_smoothing_raises_the_loss_of_a_confident_correct_model():
    logits = torch.full((1, 2, 4), -10.0)
    target = torch.tensor([[1, 2]])
    logits[0, 0, 1] = logits[0, 1, 2] = 10.0
    lengths = torch.tensor([2])
    assert masked_cross_entropy(logits, target, lengths)[0] < 1e-6
    assert masked_cross_entropy(logits, target, lengths, label_smoothing=0.1)[0] > 0.5


def _digits(n, gen, steps=6):
    """Reverse-a-digit-string task: ids 4..13 are the digits 0..9, 1 to 5 digits per string."""
    lengths = torch.randint(1, 6, (n,), generator=gen)
    digits = torch.randint(4, 14, (n, 5), generator=gen)
    src = torch.full((n, steps), PAD_ID)
    tgt = torch.full((n, steps), PAD_ID)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length], src[i, length] = digits[i, :length], EOS_ID
        tgt[i, :length], tgt[i, length] = digits[i, :length].flip(0), EOS_ID
    return src, lengths + 1, tgt


def test_learns_to_reverse_digit_strings():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = Seq2Seq(14, 14, embed=16, hidden=32, layers=1, attention="additive")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        src, lengths, tgt = _digits(64, gen)
        loss, _ = masked_cross_entropy(model(src, lengths, decoder_input(tgt)), tgt, lengths)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    src, lengths, tgt = _digits(500, gen)
    wanted = [tgt[i, : n - 1].tolist() for i, n in enumerate(lengths.tolist())]
    hyps = greedy(model, src, lengths, BOS_ID, EOS_ID, max_len=8)
    assert sum(h.tokens == w for h, w in zip(hyps, wanted)) / 500 > 0.95
    beams = beam_search(model, src[:50], lengths[:50], BOS_ID, EOS_ID, max_len=8, beam=3)
    assert sum(b[0].tokens == w for b, w in zip(beams, wanted[:50])) / 50 > 0.95
