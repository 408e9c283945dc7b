import torch

from skillscale.model.decoder import Decoder, ModelShape, flops_per_token, param_counts


def test_param_conventions_match_the_module():
    s = ModelShape(d_model=48, n_layers=3, n_heads=4, vocab_size=300, seq_len=32)
    m = Decoder(s)
    total = sum(p.numel() for p in m.parameters())
    embed = m.embed.weight.numel()
    head = m.head.weight.numel()
    c = param_counts(s)
    assert c["total"] == total
    assert c["standard"] == total - embed  # head counted, input embedding not
    assert c["nonembed"] == total - embed - head


def test_param_count_by_hand():
    # d=16, 1 layer, ffn 8/3*16 = 42.67 -> rounded up to 48, vocab 100
    s = ModelShape(d_model=16, n_layers=1, n_heads=2, vocab_size=100, seq_len=8)
    attn, mlp, norms, final = 4 * 16 * 16, 3 * 16 * 48, 2 * 16, 16
    assert s.d_ff == 48
    assert param_counts(s)["standard"] == attn + mlp + norms + final + 100 * 16


def test_flops_per_token():
    s = ModelShape(d_model=16, n_layers=2, n_heads=2, vocab_size=100, seq_len=64)
    n = param_counts(s)["standard"]
    f = flops_per_token(s)
    assert f["approx"] == 6 * n
    # attention adds 3 (fwd+bwd) x 2 (QK^T and AV) x 2 (mul+add) x L x T x d per token
    assert f["exact"] - f["approx"] == 3 * 2 * 2 * 2 * 64 * 16


def test_causal():
    torch.manual_seed(0)
    s = ModelShape(d_model=16, n_layers=2, n_heads=2, vocab_size=50, seq_len=16)
    m = Decoder(s).eval()
    x = torch.randint(0, 50, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 50
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-5)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_bad_shape_is_a_clear_error():
    import pytest

    with pytest.raises(ValueError, match="n_heads"):
        Decoder(ModelShape(d_model=30, n_layers=1, n_heads=4, vocab_size=50, seq_len=8))
