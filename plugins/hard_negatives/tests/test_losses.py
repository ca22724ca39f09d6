"""The label-aware hard-negative contrastive loss against a direct reference on small tensors: the
reweighting by exp(beta * sim), same-label items and repeats left out, beta = 0 giving plain InfoNCE
over the same negatives, gradients finite, tuples without negatives masked."""

import math

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit_plugins.hard_negatives.losses import HardNegativeContrastiveLoss


def _tuples(seed, t=7, s=3, d=5, classes=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(t, s, d, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, classes, (t, s), generator=g)
    labels[:, 1] = labels[:, 0]
    ids = torch.randint(0, 3 * t, (t, s), generator=g)
    ids[:, 1] = ids[:, 0] + 100  # the positive is another item
    live = torch.ones(t, dtype=torch.bool)
    live[-1] = False
    return z, ids, labels, live


def _reference(z, ids, labels, live, beta, tau, label_aware=True):
    """Loop by loop: negatives are distinct live items, not the anchor or its positive, other label."""
    z, ids, labels = z.numpy(), ids.numpy(), labels.numpy()
    t, s, _ = z.shape
    out, valid = [], []
    for i in range(t):
        a, p = z[i, 0], z[i, 1]
        seen, negs = set(), []
        for j in range(t):
            for k in range(s):
                item = ids[j, k]
                if not live[j] or item in seen:
                    continue
                seen.add(item)
                if item in (ids[i, 0], ids[i, 1]) or (label_aware and labels[j, k] == labels[i, 0]):
                    continue
                negs.append(z[j, k])
        if not live[i] or not negs:
            out.append(0.0)
            valid.append(False)
            continue
        sims = np.array([a @ n for n in negs])
        w = np.exp(beta * sims)
        w = w / w.mean()
        big_n = (w * np.exp(sims / tau)).sum()
        pos = math.exp(a @ p / tau)
        out.append(-math.log(pos / (pos + big_n)))
        valid.append(True)
    return np.array(out), np.array(valid)


def _plain_infonce(z, ids, labels, live, tau):
    """InfoNCE with the same negative sets, written independently (softmax cross-entropy)."""
    loss_fn = HardNegativeContrastiveLoss(beta=0.0, temperature=tau)
    cand = loss_fn.negatives(ids, labels, live)
    flat = z.reshape(-1, z.shape[-1])
    out = []
    for i in range(z.shape[0]):
        logits = torch.cat([(z[i, 0] @ z[i, 1]).view(1), flat[cand[i]] @ z[i, 0]]) / tau
        out.append(torch.nn.functional.cross_entropy(logits.view(1, -1), torch.zeros(1, dtype=torch.int64)) if cand[i].any() else torch.tensor(0.0))
    return torch.stack(out).double()


@pytest.mark.parametrize("seed,beta,tau", [(0, 1.0, 0.1), (1, 5.0, 0.2), (2, 0.5, 1.0), (3, 10.0, 0.05)])
def test_matches_reference(seed, beta, tau):
    z, ids, labels, live = _tuples(seed)
    got, valid = HardNegativeContrastiveLoss(beta=beta, temperature=tau)(z, ids, labels, live)
    want, want_valid = _reference(z, ids, labels, live, beta, tau)
    assert valid.tolist() == want_valid.tolist()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)


def test_without_labels_every_other_item_is_a_negative():
    z, ids, labels, live = _tuples(4)
    got, _ = HardNegativeContrastiveLoss(beta=2.0, temperature=0.3, label_aware=False)(z, ids, None, live)
    want, _ = _reference(z, ids, labels, live, 2.0, 0.3, label_aware=False)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
    with pytest.raises(ConfigError, match="label_aware"):
        HardNegativeContrastiveLoss()(z, ids, None, live)


@pytest.mark.parametrize("seed", [0, 5])
def test_beta_zero_is_plain_infonce(seed):
    z, ids, labels, live = _tuples(seed)
    got, valid = HardNegativeContrastiveLoss(beta=0.0, temperature=0.2)(z, ids, labels, live)
    want = _plain_infonce(z, ids, labels, live, 0.2)
    np.testing.assert_allclose(got[valid].numpy(), want[valid].numpy(), rtol=1e-9)


def test_larger_beta_weighs_hard_negatives_more():
    """With one hard and one easy negative, the loss grows with beta (more weight on the hard one)."""
    a = torch.tensor([1.0, 0.0])
    hard, easy = torch.nn.functional.normalize(torch.tensor([0.8, 0.6]), dim=0), torch.tensor([-1.0, 0.0])
    z = torch.stack([torch.stack([a, a, hard]), torch.stack([easy, easy, easy])]).double()
    ids = torch.tensor([[0, 1, 2], [3, 4, 5]])
    labels = torch.tensor([[0, 0, 1], [1, 1, 1]])
    live = torch.ones(2, dtype=torch.bool)
    losses = [float(HardNegativeContrastiveLoss(beta=b, temperature=0.5)(z, ids, labels, live)[0][0]) for b in (0.0, 1.0, 4.0)]
    assert losses[0] < losses[1] < losses[2]


def test_tuples_without_negatives_are_masked_and_gradients_finite():
    z, ids, labels, live = _tuples(6, classes=1)  # one label: no negative anywhere
    z.requires_grad_(True)
    loss, valid = HardNegativeContrastiveLoss(beta=3.0)(z, ids, labels, live)
    assert not valid.any() and bool((loss == 0).all())
    z2, ids2, labels2, live2 = _tuples(7)
    z2.requires_grad_(True)
    loss2, valid2 = HardNegativeContrastiveLoss(beta=3.0)(z2, ids2, labels2, live2)
    (loss.sum() + loss2.sum()).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(z2.grad).all() and z2.grad.abs().sum() > 0


def test_bad_settings_name_the_setting():
    for kwargs, key in (({"beta": -1}, "beta"), ({"temperature": 0}, "temperature"), ({"label_aware": "yes"}, "label_aware")):
        with pytest.raises(ConfigError, match=rf"task\.loss\.{key}"):
            HardNegativeContrastiveLoss(**kwargs)
