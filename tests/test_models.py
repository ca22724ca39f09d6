"""Models: shapes, embeddings, the factory's errors, and that a few SGD steps learn on digits."""

from __future__ import annotations

import pytest
import torch

from selectkit.data import build_datasets
from selectkit.errors import ConfigError
from selectkit.models import MLP, SmallCNN, build_model


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 16, 16)])
@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_shapes_and_embeddings(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, num_classes=7).eval()
    x = torch.randn(5, *shape)
    with torch.no_grad():
        logits, z = model(x), model.embed(x)
        assert logits.shape == (5, 7)
        assert z.shape == (5, model.embedding_dim)
        torch.testing.assert_close(model.head(z), logits)


def test_cnn_size_and_settings():
    cnn = SmallCNN(in_channels=1, num_classes=10, input_size=28, width=32)
    assert 50_000 < sum(p.numel() for p in cnn.parameters()) < 150_000
    assert cnn.embedding_dim == 128
    assert build_model("cnn", (1, 28, 28), 10, width=8, embedding_dim=32).embedding_dim == 32


def test_mlp_flattens_and_uses_last_hidden_as_embedding():
    mlp = MLP(in_features=64, hidden=[32, 16], num_classes=10, dropout=0.0)
    assert mlp.embedding_dim == 16
    assert mlp(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert MLP(in_features=64, hidden=[], num_classes=10).embedding_dim == 64


@pytest.mark.parametrize(
    "name, kwargs, setting",
    [
        ("resnet", {}, r"model\.name must be one of cnn, mlp"),
        ("cnn", {"depth": 3}, r"model\.depth is not a setting of SmallCNN"),
        ("mlp", {"width": 3}, r"model\.width is not a setting of MLP"),
        ("cnn", {"width": 0}, r"model\.width"),
        ("mlp", {"dropout": 1.0}, r"model\.dropout"),
        ("mlp", {"hidden": [32, -1]}, r"model\.hidden\.1"),
    ],
)
def test_bad_settings_name_the_setting(name, kwargs, setting):
    with pytest.raises(ConfigError, match=setting) as err:
        build_model(name, (1, 28, 28), 10, **kwargs)
    assert "\n" not in str(err.value)


def test_cnn_refuses_tiny_images():
    with pytest.raises(ConfigError, match="model=mlp"):
        build_model("cnn", (1, 3, 3), 10)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_a_few_sgd_steps_reduce_the_loss(name):
    train, _, meta = build_datasets("digits", val_fraction=0.25, seed=0, normalize=True)
    torch.manual_seed(0)
    model = build_model(name, meta["input_shape"], meta["num_classes"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = train.x[:512], train.y[:512]
    loss_fn = torch.nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        before = float(loss_fn(model(x), y))
    model.train()
    for step in range(20):
        idx = torch.arange(step * 64, step * 64 + 64) % x.shape[0]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = float(loss_fn(model(x), y))
    assert after < 0.5 * before


def test_an_inner_layer_as_wide_as_the_classes_is_not_the_head():
    """Only the network's last nn.Linear can be found as the head: an inner layer with num_classes
    outputs (here 4) must not be taken for it (a contrastive task would freeze it)."""
    import torch.nn as nn

    from selectkit.models import ModelAdapter

    inner = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 8))
    assert ModelAdapter(inner, num_classes=4).head is None
    classifier = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 4))
    assert ModelAdapter(classifier, num_classes=4).head is classifier[2]


# ----------------------------------------------------------------------------------- embeddings -> outputs
class _Flat(torch.nn.Module):
    """A conv embedding layer, then Flatten, in-place ReLU, Dropout and the head: a chain of modules."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.tail = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU(inplace=True), torch.nn.Dropout(0.5), torch.nn.Linear(3 * 8 * 8, 4))

    def forward(self, x):
        return self.tail(self.features(x))


class _Skip(torch.nn.Module):
    """A skip connection around the layer after the embedding: no chain of modules gives the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.mid, self.out = torch.nn.Linear(6, 5), torch.nn.Linear(5, 5), torch.nn.Linear(5, 4)

    def forward(self, x):
        h = self.body(x)
        return self.out(self.mid(h) + h)


def test_output_map_runs_the_modules_after_the_embedding_layer():
    from selectkit.models import ModelAdapter

    torch.manual_seed(0)
    net = _Flat().eval()
    x = torch.randn(5, 1, 8, 8)
    adapter = ModelAdapter(net, embedding_layer="features", num_classes=4)
    z = adapter.embed(x)
    assert z.shape == (5, 3 * 8 * 8)
    f = adapter.output_map(x)
    torch.testing.assert_close(f(z), net(x))
    mix = 0.3 * z[:2] + 0.7 * z[2:4]
    torch.testing.assert_close(f(mix), net.tail(mix.reshape(2, 3, 8, 8)), msg="points between embeddings go through the rest of the network")
    assert net.tail[2].training is False, "the network's own modes are restored"
    net.train()
    adapter.output_map(x)
    assert all(m.training for m in net.modules())


def test_output_map_of_the_head_input_and_of_embed_head():
    from selectkit.models import MLP, ModelAdapter

    seq = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4)).eval()
    x = torch.randn(3, 6)
    adapter = ModelAdapter(seq, num_classes=4)
    torch.testing.assert_close(adapter.output_map(x)(adapter.embed(x)), seq(x))
    mlp = MLP(in_features=6, hidden=[5], num_classes=4)
    assert ModelAdapter(mlp, num_classes=4).output_map(None) == mlp.head, "embed() and head() need no forward pass"


@pytest.mark.parametrize("net, layer", [(_Skip(), "body"), (_Skip(), "mid")])
def test_output_map_refuses_what_is_not_a_chain_of_modules(net, layer):
    from selectkit.models import ModelAdapter

    with pytest.raises(ConfigError, match=r"^stage\.space=embedding needs _Skip's outputs .*model\.embedding_layer") as err:
        ModelAdapter(net, embedding_layer=layer, num_classes=4).output_map(torch.randn(3, 6), needed_by="stage.space=embedding")
    assert "\n" not in str(err.value)


def test_make_model_names_the_arguments_it_does_not_fill():
    from selectkit.models import make_model

    class Net(torch.nn.Module):
        def __init__(self, in_features, width, depth, num_classes, scale=1.0):
            super().__init__()

    with pytest.raises(ConfigError, match=r"^model: Net needs width, depth, which selectkit does not fill; it fills in_features, in_channels, input_size, input_shape, num_classes from the data; set the others as model\.<name>, e.g. model\.width=") as err:
        make_model(Net, (1, 8, 8), 10)
    assert "\n" not in str(err.value)
    assert isinstance(make_model(Net, (1, 8, 8), 10, width=3, depth=2), Net)
    assert isinstance(make_model(Net, (1, 8, 8), 10, width=3, depth=2, num_classes=5), Net), "a num_classes setting wins over the data's"
