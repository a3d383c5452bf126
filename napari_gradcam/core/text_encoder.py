"""A vision-language model's text tower: prompts to unit-length embeddings, cached per prompt."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import torch

MAX_CACHED_PROMPTS = 256
"""Prompt embeddings kept; the oldest goes first."""


class TextEncoder:
    """Embeds prompts with a model's text tower; each prompt's embedding is computed once.

    Parameters
    ----------
    encode : callable
        ``encode(list of str) -> Tensor (P, D)``: the text tower on already templated prompts
        (tokenizer included). Called under inference mode.
    template : str
        How a prompt becomes the text the tower reads, with ``{}`` where the prompt goes (the
        model card's, e.g. ``"an H&E image of {}."``).
    parameters : callable, optional
        ``parameters()`` yields the text tower's tensors; a cached embedding is dropped when
        one of them has been changed in place since (new weights loaded into the same model).
    """

    def __init__(
        self,
        encode: Callable[[list[str]], torch.Tensor],
        template: str = "{}",
        parameters: Callable[[], Iterable[torch.Tensor]] | None = None,
    ) -> None:
        if template.count("{}") != 1:
            raise ValueError(f"a prompt template holds '{{}}' once, got {template!r}")
        self.template = template
        self._encode = encode
        self._parameters = parameters
        self._cache: dict[str, torch.Tensor] = {}
        self._state: tuple = ()
        self._lock = threading.Lock()
        self.encoded = 0
        """How many texts the tower has run on (the cache's misses)."""

    def embed(self, texts: Sequence[str], template: str | None = None) -> torch.Tensor:
        """Unit-length embeddings (P, D) of ``texts`` wrapped in ``template`` (default: own)."""
        template = self.template if template is None else template
        if template.count("{}") != 1:
            raise ValueError(f"a prompt template holds '{{}}' once, got {template!r}")
        # not str.format: a card's template is data, and its other braces are plain text
        prompts = [template.replace("{}", text) for text in texts]
        with self._lock:
            self._drop_if_changed()
            missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
            if missing:
                self._store(missing, self._run(missing))
            return torch.stack([self._cache[p] for p in prompts])

    def _run(self, prompts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            embeddings = self._encode(prompts)
        if not isinstance(embeddings, torch.Tensor) or embeddings.shape[:1] != (len(prompts),):
            shape = getattr(embeddings, "shape", type(embeddings).__name__)
            raise ValueError(
                f"the text tower gave {shape} for {len(prompts)} prompts; it must return one "
                "embedding per prompt (P, D)"
            )
        embeddings = embeddings.detach().float().reshape(len(prompts), -1)
        if not torch.isfinite(embeddings).all() or not embeddings.norm(dim=1).gt(0).all():
            raise ValueError("the text tower gave a zero or non-finite embedding for a prompt")
        self.encoded += len(prompts)
        return torch.nn.functional.normalize(embeddings, dim=1)

    def _store(self, prompts: list[str], embeddings: torch.Tensor) -> None:
        for prompt, embedding in zip(prompts, embeddings, strict=True):
            self._cache[prompt] = embedding.clone()
        while len(self._cache) > MAX_CACHED_PROMPTS:
            self._cache.pop(next(iter(self._cache)))

    def _drop_if_changed(self) -> None:
        """Empty the cache when a tower tensor was replaced or changed in place."""
        if self._parameters is None:
            return
        state = tuple((id(t), t.data_ptr(), t._version) for t in self._parameters())
        if state != self._state:
            self._cache.clear()
            self._state = state
