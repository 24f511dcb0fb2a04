"""baselines.parti.tokenizer: the quantizer's losses (non-legacy placement), usage buffer and codebook statistics."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.parti.tokenizer import ModelArgs, VQModel, VectorQuantizer, codebook_usage


def test_commitment_weight_sits_on_the_encoder_term():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_e=16, e_dim=4, beta=0.25, entropy_loss_ratio=0.0, l2_norm=True, show_usage=True).train()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    _, (vq_loss, commit_loss, entropy_loss, usage), (_, _, indices) = vq(z)
    torch.testing.assert_close(commit_loss, 0.25 * vq_loss)  # same distance, beta on the commitment term only
    assert entropy_loss.detach().item() == 0.0 and 0 < usage <= 1
    vq_loss.backward(retain_graph=True)  # the codebook term moves the codebook, not the encoder
    assert z.grad is None and vq.embedding.weight.grad.abs().sum() > 0
    vq.embedding.weight.grad = None
    commit_loss.backward()  # the commitment term moves the encoder, not the codebook
    assert z.grad.abs().sum() > 0 and vq.embedding.weight.grad is None
    # the usage ring buffer holds the latest indices at its end
    assert torch.equal(vq.codebook_used[-indices.numel():], indices.float())


def test_quantizer_snaps_to_normalised_rows_and_eval_computes_no_loss():
    torch.manual_seed(1)
    model = VQModel(ModelArgs(codebook_size=32, codebook_embed_dim=8, encoder_ch_mult=[1, 1],
                              decoder_ch_mult=[1, 1], z_channels=32, ch=32, num_res_blocks=1)).eval()
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        quant, losses, (_, _, indices) = model.encode(x)
    assert losses == (None, None, None, 0)
    assert quant.shape == (1, 8, 4, 4) and indices.shape == (16,)
    torch.testing.assert_close(quant.norm(dim=1), torch.ones(1, 4, 4))
    assert torch.equal(model.quantize.codebook_used, torch.zeros(65536))  # untouched in eval


def test_codebook_usage_and_perplexity():
    stats = codebook_usage(torch.tensor([[0, 1], [2, 3]]), codebook_size=8)
    assert stats == {"usage": 0.5, "perplexity": pytest.approx(4.0), "used": 4, "n": 4}
    assert codebook_usage(torch.zeros(10, dtype=torch.long), 8)["perplexity"] == pytest.approx(1.0)
    skewed = codebook_usage(torch.tensor([0, 0, 0, 1]), 4)
    assert skewed["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        codebook_usage(torch.tensor([4]), 4)


def test_network_modules_are_leaves():
    """tokenizer.py and models.py import only torch and the standard library (no project imports, no cycles)."""
    import ast
    import sys
    from pathlib import Path

    import baselines.parti as family

    for name in ("tokenizer.py", "models.py"):
        tree = ast.parse((Path(family.__file__).parent / name).read_text())
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name} has a relative import"
                roots.add(node.module.split(".")[0])
        assert roots - {"torch", "__future__"} <= set(sys.stdlib_module_names), (name, roots)
