"""Merge-attention fusion: shapes, padding and missing-modality invariance, a slow per-item reference."""

from __future__ import annotations

import pytest
import torch

from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.data.pooling import masked_mean, pool_token_groups
from recbole_pmmrec.model.fusion import MergeAttentionFusion

D, HEADS, LT, LV = 16, 2, 5, 3


def _inputs(n=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(n, LT, D, generator=g, dtype=dtype)
    image = torch.randn(n, LV, D, generator=g, dtype=dtype)
    lengths = torch.tensor([5, 3, 1, 4, 2, 5][:n])
    text_mask = torch.arange(LT)[None, :] < lengths[:, None]  # (n, LT), left-aligned
    has_text = torch.tensor([True, True, True, False, True, False][:n])
    has_image = torch.tensor([True, False, True, True, True, False][:n])
    return text, text_mask, image, has_text, has_image


def _fusion(seed=0, dtype=torch.float64, dropout=0.1):
    torch.manual_seed(seed)
    return MergeAttentionFusion(D, HEADS, dropout=dropout).to(dtype).eval()


def _reference(fusion, text, text_mask, image, has_text, has_image):
    """Slow: each item alone, only its valid tokens, no mask at all, plain mean."""
    out = []
    for i in range(text.shape[0]):
        parts = []
        if has_text[i]:
            parts.append(text[i][text_mask[i]])
        if has_image[i]:
            parts.append(image[i])
        if not parts:
            out.append(torch.zeros(D, dtype=text.dtype))
            continue
        tokens = torch.cat(parts)[None]  # (1, n_valid, D)
        no_mask = torch.zeros(1, 1, 1, tokens.shape[1], dtype=text.dtype)
        out.append(fusion.merge_layer(tokens, no_mask)[0].mean(0))
    return torch.stack(out)


def test_merge_attention_matches_per_item_reference():
    fusion = _fusion()
    text, text_mask, image, has_text, has_image = _inputs()
    with torch.no_grad():
        got = fusion(text, text_mask, image, has_text, has_image)
        want = _reference(fusion, text, text_mask, image, has_text, has_image)
    assert got.shape == (6, D)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)
    # the item with neither modality (row 5) is a zero vector, the others are not
    assert torch.count_nonzero(got[5]) == 0 and (got[:5].abs().sum(1) > 0).all()


def test_padding_tokens_never_influence_output():
    fusion = _fusion(dtype=torch.float32)
    text, text_mask, image, has_text, has_image = _inputs(dtype=torch.float32)
    with torch.no_grad():
        base = fusion(text, text_mask, image, has_text, has_image)
        noisy_text = torch.where(text_mask[..., None], text, torch.randn_like(text) * 100)
        changed = fusion(noisy_text, text_mask, image, has_text, has_image)
    assert torch.equal(base, changed)


def test_missing_modality_is_single_modality_pooling_through_layer():
    fusion = _fusion(dtype=torch.float32)
    text, text_mask, image, has_text, has_image = _inputs(dtype=torch.float32)
    with torch.no_grad():
        base = fusion(text, text_mask, image, has_text, has_image)
        # values of a missing modality are irrelevant (even huge ones)
        image2 = torch.where(has_image[:, None, None], image, torch.full_like(image, 1e4))
        text2 = torch.where(has_text[:, None, None], text, torch.full_like(text, -1e4))
        assert torch.equal(base, fusion(text2, text_mask, image2, has_text, has_image))
        # item 1 has no image: exactly the layer on its text alone; item 3 has no text: the layer on its image
        text_only = fusion.attend(text[1:2], text_mask[1:2])
        image_only = fusion.attend(image[3:4], torch.ones(1, LV, dtype=torch.bool))
    torch.testing.assert_close(base[1:2], text_only, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(base[3:4], image_only, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(base[1], masked_mean(text[1:2], text_mask[1:2])[0])  # the layer did run


def test_single_modality_modes_are_plain_means():
    fusion = _fusion()
    text, text_mask, image, has_text, has_image = _inputs()
    text_only = fusion(text_tokens=text, text_mask=text_mask)
    want = torch.stack([text[i][text_mask[i]].mean(0) for i in range(6)])
    torch.testing.assert_close(text_only, want)
    image_only = fusion(image_tokens=image, has_image=has_image)
    want = torch.stack([image[i].mean(0) if has_image[i] else torch.zeros(D, dtype=image.dtype) for i in range(6)])
    torch.testing.assert_close(image_only, want)
    with pytest.raises(PMMRecConfigError, match="modalities"):
        fusion()


def test_masked_mean():
    text, text_mask, image, _, _ = _inputs()
    text_vec = masked_mean(text, text_mask)
    torch.testing.assert_close(text_vec, torch.stack([text[i][text_mask[i]].mean(0) for i in range(6)]))
    torch.testing.assert_close(masked_mean(image, None), image.mean(1))
    empty = torch.zeros(6, LT, dtype=torch.bool)
    assert torch.count_nonzero(masked_mean(text, empty)) == 0
    poisoned = torch.where(text_mask[..., None], text, torch.full_like(text, float("inf")))
    torch.testing.assert_close(masked_mean(poisoned, text_mask), text_vec)  # padding values never leak


def test_gradients_reach_layer_and_tokens_and_dropout_is_active_in_train():
    fusion = _fusion(dtype=torch.float32, dropout=0.5).train()
    text, text_mask, image, has_text, has_image = _inputs(dtype=torch.float32)
    text.requires_grad_(True)
    out = fusion(text, text_mask, image, has_text, has_image)
    out.pow(2).sum().backward()
    grads = [p.grad for p in fusion.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert fusion.merge_layer.multi_head_attention.query.weight.grad.abs().sum() > 0
    assert text.grad[~text_mask].abs().sum() == 0  # padding gets no gradient
    assert text.grad[text_mask & has_text[:, None]].abs().sum() > 0
    with torch.no_grad():
        again = fusion(text, text_mask, image, has_text, has_image)
    assert not torch.allclose(out, again)


def test_bad_config_is_named():
    with pytest.raises(PMMRecConfigError, match="fusion_heads"):
        MergeAttentionFusion(10, 3)
    with pytest.raises(PMMRecConfigError, match="hidden_act"):
        MergeAttentionFusion(8, 2, hidden_act="mish")
    assert MergeAttentionFusion(8, 2).inner_size == 32


def test_fused_gelu_is_recboles_gelu_in_one_kernel():
    """fused_gelu swaps RecBole's five-pass erf GELU for F.gelu: same outputs (to float rounding), other
    activations untouched, in the merge layer and in the user encoder."""
    import copy

    import torch.nn.functional as F
    from recbole.model.layers import FeedForward

    from recbole_pmmrec.model.fusion import fused_gelu
    from recbole_pmmrec.model.pmmrec import UserEncoder

    torch.manual_seed(0)
    fusion = MergeAttentionFusion(16, 2, dropout=0.0).eval()
    users = UserEncoder(8, 16, 2, 2, 32, 0.0, 0.0, "gelu", 1e-12).eval()
    for module in (fusion, users):
        ffns = [m for m in module.modules() if isinstance(m, FeedForward)]
        assert ffns and all(m.intermediate_act_fn is F.gelu for m in ffns)
    reference = copy.deepcopy(fusion)
    for m in reference.modules():
        if isinstance(m, FeedForward):
            m.intermediate_act_fn = m.gelu  # RecBole's own
    text, image = torch.randn(5, 6, 16) * 3, torch.randn(5, 4, 16) * 3
    mask = torch.rand(5, 6) > 0.3
    assert torch.allclose(fusion(text, mask, image), reference(text, mask, image), atol=1e-6)

    relu = FeedForward(16, 32, 0.0, "relu", 1e-12)
    act = relu.intermediate_act_fn
    fused_gelu(relu)
    assert relu.intermediate_act_fn is act


def _groups_reference(x, mask, groups):
    """Per item: its valid tokens in order, cut into `groups` runs (floor(r * groups / n)), each averaged."""
    out = []
    for row, valid in zip(x, mask):
        tokens = row[valid]
        n = tokens.shape[0]
        if n <= groups:
            out.append([t for t in tokens])
        else:
            members = [[] for _ in range(groups)]
            for r in range(n):
                members[r * groups // n].append(tokens[r])
            out.append([torch.stack(m).mean(dim=0) for m in members])
    return out


def test_pool_token_groups_averages_runs_of_valid_tokens_in_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 11, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([11, 9, 5, 4, 1, 0])
    mask = torch.arange(11)[None] < lengths[:, None]
    mask[1, 2] = False  # a hole: ranks count valid tokens only
    pooled, valid, counts = pool_token_groups(x, mask, 4)
    assert pooled.shape == (6, 4, 4) and valid.shape == counts.shape == (6, 4)
    want = _groups_reference(x, mask, 4)
    for i, groups in enumerate(want):
        assert int(valid[i].sum()) == len(groups) and bool(valid[i, :len(groups)].all())  # valid groups first
        for j, vec in enumerate(groups):
            torch.testing.assert_close(pooled[i, j], vec)
    assert counts[0].tolist() == [3, 3, 3, 2] and counts[3].tolist() == [1, 1, 1, 1] and counts[5].sum() == 0
    # the size-weighted mean of the groups is the mean of the valid tokens
    weighted = (pooled * counts[..., None]).sum(1) / counts.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(weighted, masked_mean(x, mask))
    # more groups than tokens: every token is its own group
    same, valid_all, ones = pool_token_groups(x, mask, 50)
    assert same.shape[1] == 11
    torch.testing.assert_close(same[valid_all], x[mask])
