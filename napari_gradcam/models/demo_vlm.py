"""The bundled demo vision-language model: a CNN image tower and a bag-of-words text tower.

Both towers map into one 64-dimensional space where the cosine similarity of a tile and a
caption says how well the caption describes the tile (CLIP-style). The image tower is the
demo classifier's network with a 64-wide projection for a head (``image_tower``, explained
at ``image_tower.features.10``); ``forward`` returns its (N, 64) embeddings, so the model
explains like any image encoder. The text tower (``text_tower``) reads prompts with
:class:`WordTokenizer`, a word-level tokenizer over the fixed :data:`VOCABULARY`, averages the
words' embeddings and projects the mean with a two-layer MLP.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from napari_gradcam.models.demo_net import DemoNet

EMBED_DIM = 64
"""Width of the shared image-text embedding."""

TEMPLATE = "an H&E tile of {}."
"""The prompt template the text tower was trained with."""

TEMPLATE_WORDS: tuple[str, ...] = ("an", "h&e", "tile", "of")
"""The template's words: in the vocabulary, but no prompt is made of them alone."""

CONTENT_WORDS: tuple[str, ...] = (
    "background",
    "blank",
    "empty",
    "glass",
    "slide",
    "white",
    "no",
    "tissue",
    "stroma",
    "stromal",
    "pink",
    "connective",
    "fibrous",
    "collagen",
    "eosinophilic",
    "loose",
    "nuclei",
    "dense",
    "densely",
    "packed",
    "crowded",
    "many",
    "purple",
    "cellular",
    "hypercellular",
    "region",
)
"""The words of the demo captions (``napari_gradcam.training.vlm_captions``)."""

VOCABULARY: tuple[str, ...] = TEMPLATE_WORDS + CONTENT_WORDS
"""Every word the text tower knows, in embedding-row order."""

DEFAULT_LAYER = "image_tower.features.10"
"""The ReLU of the image tower's third block, at stride 4 (a 24 x 24 map on a 96 px tile): the
prompt maps of the last ReLU (``features.14``, stride 8) fall on nuclei less (see
docs/demo-models.md)."""

WORD_PATTERN = re.compile(r"[a-z0-9&]+")
"""A word: lower-case letters, digits and ``&`` ("H&E"); anything else separates words."""


class WordTokenizer:
    """Split prompts into words and map each known word to its row in ``vocabulary``.

    Words outside the vocabulary are skipped (the text tower averages its words, so an
    unknown word adds nothing). A prompt none of whose words is known besides
    ``template_words`` has nothing left to embed and is refused.
    """

    def __init__(self, vocabulary: tuple[str, ...], template_words: tuple[str, ...]) -> None:
        self.vocabulary = vocabulary
        self.rows = {word: row for row, word in enumerate(vocabulary)}
        self.template_words = frozenset(template_words)

    def words(self, text: str) -> list[str]:
        """Return the words of ``text``, lower-cased (``nuclei-dense`` is two words)."""
        return WORD_PATTERN.findall(text.lower())

    def rows_of(self, text: str) -> list[int]:
        """Return the vocabulary rows of the known words of ``text``, in order.

        Raises ValueError when no word of ``text`` is known besides the template's words.
        """
        words = self.words(text)
        if not any(w in self.rows and w not in self.template_words for w in words):
            known = sorted(set(self.vocabulary) - self.template_words)
            raise ValueError(
                f"the demo text tower knows none of the words of {text!r}: it has a "
                f"{len(known)}-word vocabulary ({', '.join(known)}); write the prompt with "
                "some of these words"
            )
        return [self.rows[w] for w in words if w in self.rows]


class TextTower(nn.Module):
    """Mean of the prompt's word embeddings, projected by a two-layer MLP."""

    def __init__(self, vocabulary_size: int, width: int = EMBED_DIM) -> None:
        super().__init__()
        self.words = nn.EmbeddingBag(vocabulary_size, width, mode="mean")
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.GELU(), nn.Linear(width, EMBED_DIM)
        )

    def forward(self, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Return (P, EMBED_DIM) embeddings of P prompts given as flat rows and start offsets."""
        return self.projection(self.words(rows, offsets))


class DemoVlm(nn.Module):
    """Image and text towers of the demo vision-language model.

    ``forward`` embeds images, :meth:`encode_text` embeds prompts already written into the
    template (:data:`TEMPLATE`, the card's); neither normalises, so compare them by cosine
    similarity.
    """

    def __init__(self) -> None:
        super().__init__()
        self.image_tower = DemoNet(n_classes=EMBED_DIM)
        self.text_tower = TextTower(len(VOCABULARY))
        self.tokenizer = WordTokenizer(VOCABULARY, TEMPLATE_WORDS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (N, EMBED_DIM) embeddings of a normalised (N, 3, H, W) batch."""
        return self.image_tower(x)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Return (P, EMBED_DIM) embeddings of P prompts (see :class:`WordTokenizer`)."""
        rows = [self.tokenizer.rows_of(text) for text in texts]
        device = self.text_tower.words.weight.device
        flat = torch.tensor([r for prompt in rows for r in prompt], device=device)
        starts = torch.tensor([0, *(len(r) for r in rows[:-1])], device=device).cumsum(0)
        return self.text_tower(flat, starts)


def build_demo_vlm() -> DemoVlm:
    """Return an untrained :class:`DemoVlm`."""
    return DemoVlm()
