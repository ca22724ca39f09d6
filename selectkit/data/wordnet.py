"""`WordNet`: a text-retrieval data source from Princeton WordNet's database files (Debian's
``wordnet-base``: ``/usr/share/wordnet/data.noun`` and friends), read offline.

Each synset gives one pair: its definition (the gloss without its quoted examples) is a query and
one of its words (lemmas, underscores read as spaces) the document it should retrieve. Synsets are
taken in a seeded random order and each keeps the first of its words that no earlier pair took, so
every word is the document of exactly one definition. A split holds ``n`` pairs as ``2n`` rows:
definitions ``0..n-1``, then their words ``n..2n-1``; the rows of pair ``i`` share label ``i``
(validation labels follow the training ones), and a row's ``query`` is True for definitions.

Texts are tokenised once with the encoder's tokenizer (`selectkit.text.tokenize`) into ``[2, L]``
float32 rows, so they batch like any other rows; train `selectkit.text.SentenceEncoder` on them with
``task=contrastive`` (validation: definitions retrieve their word among the split's words, recall@k
and MRR). The training split offers ``pairs()``: (definition ids, word ids).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from selectkit.data.base import DataSource, source_meta
from selectkit.data.memory import ArrayDataset
from selectkit.errors import ConfigError

#: Where WordNet's database files are looked for when ``data.wordnet_dir`` is unset (after $WNSEARCHDIR).
WORDNET_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/share/wordnet/dict")
#: Parts of speech and their database files.
POS_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
_MARKER = re.compile(r"\([a-z]+\)$")
#: Where a gloss's quoted examples start (``; "...`` or ``: "...``).
_EXAMPLE = re.compile(r'[;:] *"')


def find_wordnet(wordnet_dir: str | os.PathLike | None = None, pos: Sequence[str] = ("noun",)) -> Path:
    """The folder holding WordNet's ``data.<pos>`` files; `ConfigError` with the install command otherwise."""
    candidates = [Path(wordnet_dir).expanduser()] if wordnet_dir else [Path(p) for p in ([os.environ["WNSEARCHDIR"]] if os.environ.get("WNSEARCHDIR") else []) + list(WORDNET_DIRS)]
    for folder in candidates:
        if all((folder / POS_FILES[p]).is_file() for p in pos):
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"data.wordnet_dir: WordNet's database files (data.{'/data.'.join(pos)}) are not in {where}; install them with `apt-get install wordnet-base` or point data.wordnet_dir at them")


def read_synsets(path: Path) -> list[tuple[list[str], str]]:
    """``(words, definition)`` of every synset in one WordNet ``data.<pos>`` file, in file order."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line or line[0] == " " or " | " not in line:
                continue
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            count = int(fields[3], 16)
            words = [_MARKER.sub("", w).replace("_", " ") for w in fields[4 : 4 + 2 * count : 2]]
            definition = _EXAMPLE.split(gloss.strip(), 1)[0].strip().rstrip(";:").strip()
            if words and definition:
                out.append((words, definition))
    return out


def choose_pairs(synsets: list[tuple[list[str], str]], n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (definition, word) pairs: synsets in a seeded order, each with its first word not taken yet."""
    order = np.random.default_rng([int(seed), 0x574E]).permutation(len(synsets))
    taken: set[str] = set()
    pairs = []
    for i in order:
        words, definition = synsets[int(i)]
        word = next((w for w in words if w.lower() not in taken), None)
        if word is None:
            continue
        taken.add(word.lower())
        pairs.append((definition, word))
        if len(pairs) == n:
            break
    return pairs


class TextPairs(ArrayDataset):
    """Token rows of query/document pairs: queries ``0..n-1``, documents ``n..2n-1``, pair ``i`` labelled
    ``first_label + i``. `gather` adds ``query`` (bool); `pairs` gives (query ids, document ids).

    Args:
        x: token rows ``[2n, 2, L]`` (`selectkit.text.tokenize`).
        first_label: label of pair 0.
        texts: the ``2n`` texts, kept for inspection.
    """

    def __init__(self, x: torch.Tensor, first_label: int = 0, texts: Sequence[str] = ()) -> None:
        n = int(x.shape[0]) // 2
        y = torch.arange(first_label, first_label + n, dtype=torch.int64).repeat(2)
        super().__init__(x, y)
        self.n_pairs = n
        self.first_label = int(first_label)
        self.texts = list(texts)
        self.query = torch.arange(2 * n) < n

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().gather(ids)
        out["query"] = ids.to(self.query.device) < self.n_pairs
        return out

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(anchor ids, positive ids): every query row and its document row, int64 ``[n]`` each."""
        q = np.arange(self.n_pairs, dtype=np.int64)
        return q, q + self.n_pairs

    def to(self, device: Any) -> "TextPairs":
        moved = TextPairs(self.x.to(device), self.first_label, self.texts)
        moved.query = self.query.to(device)
        return moved


class WordNet(DataSource):
    """Definitions retrieving their words, from WordNet's database files (see the module docstring).

    Args:
        pairs: training pairs (definitions with their words), >= 2.
        val_pairs: validation pairs (other synsets), >= 2, or 0 for no validation.
        pos: parts of speech read (``noun``, ``verb``, ``adj``, ``adv``).
        max_length: tokens per text (longer texts are truncated).
        tokenizer: the model folder whose tokenizer is used; null: the packaged all-MiniLM-L6-v2.
        wordnet_dir: folder of WordNet's ``data.*`` files; null: $WNSEARCHDIR, then /usr/share/wordnet.
        seed: seed of the choice of synsets.
    """

    def __init__(
        self,
        pairs: int = 5000,
        val_pairs: int = 1000,
        pos: Sequence[str] = ("noun",),
        max_length: int = 32,
        tokenizer: str | None = None,
        wordnet_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        self.pairs, self.val_pairs = pairs, val_pairs
        self.pos = list(pos) if isinstance(pos, (list, tuple)) else pos
        self.max_length, self.tokenizer = max_length, tokenizer
        self.wordnet_dir, self.seed = wordnet_dir, seed
        self._loaded = False

    def _check(self) -> None:
        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not (integer(self.pairs) and self.pairs >= 2):
            raise ConfigError(f"data.pairs must be an integer >= 2, got {self.pairs!r}")
        if not (integer(self.val_pairs) and (self.val_pairs == 0 or self.val_pairs >= 2)):
            raise ConfigError(f"data.val_pairs must be 0 or an integer >= 2, got {self.val_pairs!r}")
        if not isinstance(self.pos, list) or not self.pos or any(p not in POS_FILES for p in self.pos):
            raise ConfigError(f"data.pos must be a non-empty list of {', '.join(POS_FILES)}, got {self.pos!r}")
        if not (integer(self.max_length) and self.max_length >= 4):
            raise ConfigError(f"data.max_length must be an integer >= 4, got {self.max_length!r}")

    def setup(self) -> None:
        if self._loaded:
            return
        self._check()
        folder = find_wordnet(self.wordnet_dir, self.pos)
        synsets = [s for p in self.pos for s in read_synsets(folder / POS_FILES[p])]
        wanted = self.pairs + self.val_pairs
        chosen = choose_pairs(synsets, wanted, self.seed)
        if len(chosen) < wanted:
            raise ConfigError(f"data.pairs: WordNet's {'+'.join(self.pos)} files give {len(chosen)} pairs with distinct words, fewer than the {wanted} asked for (pairs + val_pairs)")
        from selectkit.text import load_tokenizer, tokenize

        tok = load_tokenizer(self.tokenizer)

        def split(part: list[tuple[str, str]], first: int) -> TextPairs:
            texts = [d for d, _ in part] + [w for _, w in part]
            return TextPairs(tokenize(texts, self.max_length, tokenizer=tok), first, texts)

        self.train = split(chosen[: self.pairs], 0)
        self.val = split(chosen[self.pairs :], self.pairs) if self.val_pairs else None
        self.meta = source_meta("wordnet", self.train, num_classes=wanted)
        self._loaded = True

    def __repr__(self) -> str:
        return f"WordNet(pairs={self.pairs}, val_pairs={self.val_pairs}, pos={self.pos})"
