"""The demo vision-language model: its word tokenizer, its towers and its captions."""

from __future__ import annotations

import pytest
import torch

from napari_gradcam.models.demo_vlm import (
    CONTENT_WORDS,
    EMBED_DIM,
    TEMPLATE,
    TEMPLATE_WORDS,
    VOCABULARY,
    WordTokenizer,
    build_demo_vlm,
)
from napari_gradcam.training.stain_labels import CLASSES
from napari_gradcam.training.vlm_captions import CLASS_PROMPTS, TRAINING_CAPTIONS, UNSEEN_CAPTIONS


@pytest.fixture(scope="module")
def tokenizer() -> WordTokenizer:
    return WordTokenizer(VOCABULARY, TEMPLATE_WORDS)


def test_tokenizer_reads_lower_case_words(tokenizer: WordTokenizer) -> None:
    words = tokenizer.words(TEMPLATE.format("Nuclei-dense tissue"))
    assert words == ["an", "h&e", "tile", "of", "nuclei", "dense", "tissue"]
    assert tokenizer.rows_of("nuclei-dense tissue") == [
        VOCABULARY.index("nuclei"),
        VOCABULARY.index("dense"),
        VOCABULARY.index("tissue"),
    ]


def test_tokenizer_skips_unknown_words(tokenizer: WordTokenizer) -> None:
    assert tokenizer.rows_of("mitotic stroma") == [VOCABULARY.index("stroma")]


@pytest.mark.parametrize("prompt", [TEMPLATE.format("mitoses"), TEMPLATE.format(""), "tumour"])
def test_tokenizer_refuses_a_prompt_it_cannot_read(tokenizer: WordTokenizer, prompt: str) -> None:
    with pytest.raises(ValueError, match=r"knows none of the words of .*: .*nuclei, .*stroma"):
        tokenizer.rows_of(prompt)


def test_text_tower_ignores_unknown_words() -> None:
    model = build_demo_vlm().eval()
    with torch.no_grad():
        known, padded = model.encode_text(["dense nuclei", "dense mitotic nuclei"])
    torch.testing.assert_close(known, padded)


def test_towers_share_one_embedding_width() -> None:
    model = build_demo_vlm().eval()
    with torch.no_grad():
        image = model(torch.zeros(2, 3, 96, 96))
        text = model.encode_text(["stroma", "background glass", "many nuclei"])
    assert image.shape == (2, EMBED_DIM) and text.shape == (3, EMBED_DIM)


def test_captions_are_written_in_the_vocabulary(tokenizer: WordTokenizer) -> None:
    for prompts in (TRAINING_CAPTIONS, UNSEEN_CAPTIONS):
        assert tuple(prompts) == CLASSES
    assert tuple(CLASS_PROMPTS) == CLASSES
    captions = [*TRAINING_CAPTIONS.values(), *UNSEEN_CAPTIONS.values()]
    words = {w for phrasings in captions for p in phrasings for w in tokenizer.words(p)}
    assert words <= set(VOCABULARY)
    trained = {
        w for phrasings in TRAINING_CAPTIONS.values() for p in phrasings for w in tokenizer.words(p)
    }
    assert trained == set(CONTENT_WORDS), "every word the text tower knows was trained"
    assert set(tokenizer.words(TEMPLATE)) == set(TEMPLATE_WORDS)
    seen = {p for phrasings in TRAINING_CAPTIONS.values() for p in phrasings}
    assert seen.isdisjoint(p for phrasings in UNSEEN_CAPTIONS.values() for p in phrasings)


def test_bundled_model_encodes_prompts_once_each() -> None:
    import napari_gradcam as ng

    loaded = ng.load_model("demo-vlm", device="cpu")
    assert loaded.card.output == "embedding" and loaded.card.classes == ()
    assert loaded.card.text.template == loaded.text.template == TEMPLATE
    encoded: list[int] = []
    hook = loaded.module.text_tower.register_forward_hook(
        lambda _module, _inputs, output: encoded.append(len(output))
    )
    try:
        first = loaded.text.embed(["nuclei-dense tissue", "stroma"])
        again = loaded.text.embed(["stroma", "nuclei-dense tissue"])
    finally:
        hook.remove()
    assert encoded == [2], "a prompt's embedding is computed once, then read from the cache"
    torch.testing.assert_close(again, first.flip(0))
    torch.testing.assert_close(first.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match=r"knows none of the words of 'an H&E tile of mitoses\.'"):
        loaded.text.embed(["mitoses"])
