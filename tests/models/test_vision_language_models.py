"""Real vision-language architectures (random weights, nothing downloaded): open_clip's
``ViT-S-32`` and ``RN50``, Hugging Face ``CLIPModel`` and ``SiglipModel`` from small configs.

Loaded with weights from a file, the image tower returns the model's own image embedding and
the text encoder its own text embedding; Grad-CAM of a prompt (and of a reference embedding)
equals pytorch-grad-cam's Grad-CAM of the tutorial's similarity target. No socket is opened.
Run in the env that has them:
``.venv-timm/bin/python -m pytest -m timm tests/models/test_vision_language_models.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import napari_gradcam as ng
from napari_gradcam.core.card import TextCard
from napari_gradcam.core.explain.model_layers import default_layer, vit_facts
from napari_gradcam.core.targets import LikeEmbedding, Prompt
from napari_gradcam.models.loading import load_model
from napari_gradcam.models.open_clip_models import build_open_clip, open_clip_tokenizer
from napari_gradcam.models.vision_language import build_vision_language
from tests.grad_cam_reference import reference_gradcam, tokens_to_nchw

pytestmark = pytest.mark.timm
open_clip = pytest.importorskip("open_clip", reason="open_clip_torch is not installed here")
transformers = pytest.importorskip("transformers", reason="transformers is not installed here")
pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam is not installed")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed here")

OPEN_CLIP_ARCH = "ViT-S-32"
SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
WORDS = ["[PAD]", "[UNK]", "<eos>", "an", "image", "of", "tumour", "stroma", "nuclei", "dense"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here fails if anything opens a connection (a download)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a network connection was opened: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class SimilarityToConcept:
    """pytorch-grad-cam's tutorial target: the cosine of the model output with a concept."""

    def __init__(self, concept: torch.Tensor) -> None:
        self.concept = concept

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return nn.functional.cosine_similarity(output, self.concept, dim=0)


def similarity_score(concept: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The sum over the batch of ``SimilarityToConcept`` of each image's output."""
    target = SimilarityToConcept(concept)
    return lambda outputs: sum(target(output) for output in outputs)


def assert_same_maps(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape
    for index in range(len(ours)):
        assert np.ptp(expected[index]) > 0
        corr = float(np.corrcoef(ours[index].ravel(), expected[index].ravel())[0, 1])
        assert corr >= 0.99, f"image {index}: correlation {corr:.4f}"


def assert_embed_tokens_is_the_head(
    tower: nn.Module, last: nn.Module, size: tuple[int, int]
) -> None:
    """``embed_tokens`` of the last block's tokens is the tower's own embedding."""
    seen: dict[str, torch.Tensor] = {}
    handle = last.register_forward_hook(
        lambda _m, _i, o: seen.update(t=o[0] if isinstance(o, tuple) else o)
    )
    try:
        with torch.inference_mode():
            embedding = tower(torch.randn(2, 3, *size))
    finally:
        handle.remove()
    with torch.inference_mode():
        assert torch.allclose(tower.embed_tokens(seen["t"]), embedding, atol=1e-5)


def write_tokenizer(folder: Path) -> Path:
    """A word-level Hugging Face tokenizer saved to ``folder`` (what a user saves once)."""
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]")
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", eos_token="<eos>"
    )
    fast.save_pretrained(folder)
    return folder


def write_card(path: Path, **fields: object) -> Path:
    path.write_text(json.dumps({"name": path.stem, **fields}))
    return path


# open_clip ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_clip_model() -> nn.Module:
    torch.manual_seed(0)
    return build_open_clip(OPEN_CLIP_ARCH)


@pytest.fixture(scope="module")
def open_clip_files(open_clip_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quilt")
    state = {k: v.contiguous() for k, v in open_clip_model.state_dict().items()}
    save_file(state, folder / "quilt.safetensors")
    write_card(folder / "quilt.json", text={"template": "an image of {}."})
    return folder / "quilt.safetensors"


@pytest.fixture(scope="module")
def open_clip_loaded(open_clip_files: Path) -> ng.LoadedModel:
    return load_model(f"open_clip:{OPEN_CLIP_ARCH}", weights=open_clip_files, device="cpu")


def test_open_clip_tower_and_text_are_the_weights_files(
    open_clip_model: nn.Module, open_clip_loaded: ng.LoadedModel
) -> None:
    loaded = open_clip_loaded
    card = loaded.card
    assert card.output == "embedding" and card.input_size == (224, 224)
    assert card.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert card.std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), open_clip_model.encode_image(x), atol=1e-5)
        tokens = open_clip.get_tokenizer(OPEN_CLIP_ARCH)(["an image of tumour."])
        expected = nn.functional.normalize(open_clip_model.encode_text(tokens), dim=1)
    assert torch.allclose(loaded.text.embed(["tumour"]), expected, atol=1e-5)


def test_open_clip_layers_are_declared_not_guessed(open_clip_loaded: ng.LoadedModel) -> None:
    facts = vit_facts(open_clip_loaded)
    assert facts.patch_size == (32, 32) and facts.prefix_tokens == 1 and facts.head == "token"
    assert default_layer(open_clip_loaded) == "transformer.resblocks.11.ln_1"


def test_prompt_and_like_embedding_gradcam_match_pytorch_grad_cam(
    open_clip_loaded: ng.LoadedModel,
) -> None:
    loaded = open_clip_loaded
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    layer = default_layer(loaded)
    reshape = tokens_to_nchw(1, (7, 7))
    prompt = ng.explain(loaded, x, target=Prompt(("tumour", "dense nuclei")))
    assert prompt.layer == layer and prompt.cam.shape == (2, 7, 7)
    assert np.isnan(prompt.probabilities).all()
    concept = nn.functional.normalize(loaded.text.embed(["tumour", "dense nuclei"]).mean(0), dim=0)
    expected = reference_gradcam(loaded.module, x, layer, reshape, similarity_score(concept))
    assert_same_maps(prompt.cam, expected)
    with torch.inference_mode():
        cosines = nn.functional.cosine_similarity(loaded.module(x), concept[None], dim=1)
    assert prompt.scores == pytest.approx(cosines.numpy(), abs=1e-5)

    reference = torch.randn(384)
    like = ng.explain(loaded, x, target=LikeEmbedding(tuple(reference.tolist())))
    expected = reference_gradcam(loaded.module, x, layer, reshape, similarity_score(reference))
    assert_same_maps(like.cam, expected)


def test_text_embeddings_are_cached_per_prompt_until_the_text_tower_changes() -> None:
    towers = build_vision_language(f"open_clip:{OPEN_CLIP_ARCH}")
    encoder = towers.text_encoder(TextCard(template="an image of {}."))
    runs: list[int] = []
    handle = towers.model.transformer.register_forward_hook(lambda *_: runs.append(1))
    try:
        first = encoder.embed(["tumour", "stroma"])
        assert len(runs) == 1 and encoder.encoded == 2
        again = encoder.embed(["stroma", "tumour", "tumour"])
        assert len(runs) == 1 and torch.equal(again[0], first[1])
        with torch.no_grad():
            towers.model.token_embedding.weight.add_(0.5)
        changed = encoder.embed(["tumour"])
        assert len(runs) == 2 and not torch.allclose(changed[0], first[0])
    finally:
        handle.remove()
    tokens = open_clip.get_tokenizer(OPEN_CLIP_ARCH)(["an image of tumour."])
    with torch.inference_mode():
        expected = nn.functional.normalize(towers.model.encode_text(tokens), dim=1)
    assert torch.allclose(changed, expected, atol=1e-5)
    assert not any(
        p is q for p in towers.text_parameters() for q in towers.image_tower.parameters()
    )


def test_open_clip_resnet_is_a_plain_cnn_and_matches_pytorch_grad_cam() -> None:
    torch.manual_seed(0)
    loaded = load_model("open_clip:RN50")
    assert vit_facts(loaded) is None
    assert default_layer(loaded) == "layer4"
    x = torch.randn(1, 3, 224, 224)
    result = ng.explain(loaded, x, target=Prompt(("tumour",)))
    concept = loaded.text.embed(["tumour"])[0]
    expected = reference_gradcam(loaded.module, x, "layer4", None, similarity_score(concept))
    assert_same_maps(result.cam, expected)


def test_a_timm_trunk_tower_is_declared_by_timm() -> None:
    loaded = load_model("open_clip:vit_medium_patch16_gap_256")
    assert loaded.card.input_size == (256, 256)
    facts = vit_facts(loaded)
    assert facts.module == "trunk" and facts.prefix_tokens == 0 and facts.head == "pooled"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"tokenizer of 'ViT-B-16-SigLIP' is a Hugging Face tokenizer .* would be download"),
        (TextCard("open_clip:roberta-ViT-B-32"), r"\(roberta-base\), which would be downloaded"),
        (TextCard("no/such/folder"), "'text.tokenizer' folder 'no/such/folder' does not exist"),
    ],
)
def test_tokenizers_that_would_download_are_refused(text: TextCard | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_clip_tokenizer("ViT-B-16-SigLIP", text)


def test_a_tokenizer_folder_replaces_open_clips_own(tmp_path: Path) -> None:
    tokenize = open_clip_tokenizer(OPEN_CLIP_ARCH, TextCard(str(write_tokenizer(tmp_path))))
    ids = tokenize(["tumour nuclei"])
    assert ids.shape == (1, 77) and ids[0, :2].tolist() == [WORDS.index("tumour"), 8]


def test_towers_that_would_download_are_refused() -> None:
    with pytest.raises(ValueError, match="'roberta-ViT-B-32' builds a tower from downloaded"):
        build_open_clip("roberta-ViT-B-32")
    with pytest.raises(ValueError, match="no architecture 'ViT-B-33'; closest: ViT-B-32"):
        build_open_clip("ViT-B-33")


def test_card_that_asks_for_classes_is_refused(open_clip_files: Path, tmp_path: Path) -> None:
    for fields in ({"output": "classes"}, {"classes": ["a", "b"]}):
        card = write_card(tmp_path / "card.json", **fields)
        with pytest.raises(ValueError, match="returns an embedding; leave 'output' out"):
            load_model(f"open_clip:{OPEN_CLIP_ARCH}", weights=open_clip_files, card=card)


# Hugging Face ------------------------------------------------------------------------------


def hugging_face_config(kind: str) -> object:
    text = {**SMALL, "vocab_size": len(WORDS), "max_position_embeddings": 12}
    vision = {**SMALL, "image_size": 48, "patch_size": 8}
    if kind == "clip":
        return transformers.CLIPConfig(
            text_config={**text, "eos_token_id": 2, "pad_token_id": 0, "bos_token_id": 2},
            vision_config=vision,
            projection_dim=16,
        )
    return transformers.SiglipConfig(text_config=text, vision_config=vision)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def hugging_face(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(loaded model, the model it was saved from) for a ``CLIPModel`` and a ``SiglipModel``."""
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    config = hugging_face_config(request.param)
    source = getattr(transformers, type(config).__name__.replace("Config", "Model"))(config)
    source.eval().save_pretrained(folder)  # config.json and model.safetensors, as published
    mean = [0.5, 0.4, 0.3]
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": mean, "image_std": [0.2, 0.2, 0.2]})
    )
    write_tokenizer(folder / "tokenizer")
    card = write_card(folder / "card.json", text={"tokenizer": "tokenizer", "template": "{}"})
    loaded = load_model(f"hf:{folder}", weights=folder / "model.safetensors", card=card)
    return loaded, source


def test_hugging_face_tower_is_get_image_features(hugging_face) -> None:
    loaded, source = hugging_face
    assert loaded.card.mean == (0.5, 0.4, 0.3) and loaded.card.input_size == (48, 48)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        expected = source.get_image_features(pixel_values=x)
        expected = getattr(expected, "pooler_output", expected)
        assert torch.allclose(loaded.module(x), expected, atol=1e-5)
        tokens = loaded.text.embed(["tumour", "dense stroma"])
    assert tokens.shape == (2, expected.shape[1])
    assert torch.allclose(tokens.norm(dim=1), torch.ones(2))


def test_hugging_face_layers_are_declared(hugging_face) -> None:
    loaded, source = hugging_face
    facts = vit_facts(loaded)
    clip = source.config.model_type == "clip"
    assert facts.patch_size == (8, 8) and facts.prefix_tokens == (1 if clip else 0)
    assert facts.head == ("token" if clip else "pooled")
    expected = (
        "vision_model.encoder.layers.1.layer_norm1" if clip else "vision_model.post_layernorm"
    )
    assert default_layer(loaded) == expected


def test_hugging_face_prompt_gradcam_matches_pytorch_grad_cam(hugging_face) -> None:
    loaded, _ = hugging_face
    torch.manual_seed(2)
    x = torch.randn(2, 3, 48, 48)
    layer = default_layer(loaded)
    result = ng.explain(loaded, x, target=Prompt(("tumour",)))
    concept = loaded.text.embed(["tumour"])[0]
    prefix = vit_facts(loaded).prefix_tokens
    reshape = tokens_to_nchw(prefix, (6, 6))
    expected = reference_gradcam(loaded.module, x, layer, reshape, similarity_score(concept))
    assert_same_maps(result.cam, expected)


def test_hugging_face_embed_tokens_is_the_head_after_the_last_layer(hugging_face) -> None:
    tower = hugging_face[0].module
    assert_embed_tokens_is_the_head(tower, tower.vision_model.encoder.layers[-1], (48, 48))


def test_hugging_face_needs_a_local_tokenizer_folder(tmp_path: Path) -> None:
    hugging_face_config("clip").save_pretrained(tmp_path)
    spec = f"hf:{tmp_path}"
    with pytest.raises(
        ValueError, match="needs its tokenizer from a local folder, and the model card names none"
    ):
        load_model(spec)
    card = write_card(tmp_path / "card.json", text={"tokenizer": "missing"})
    with pytest.raises(ValueError, match=r"names '.*missing', which does not exist; set"):
        load_model(spec, card=card)
    (tmp_path / "empty").mkdir()
    card = write_card(tmp_path / "card.json", text={"tokenizer": "empty"})
    with pytest.raises(ValueError, match="no tokenizer can be read from"):
        load_model(spec, card=card)


def test_saved_position_ids_of_older_versions_are_ignored(hugging_face, tmp_path: Path) -> None:
    loaded, source = hugging_face
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["vision_model.embeddings.position_ids"] = torch.arange(37)[None]
    save_file(state, tmp_path / "old.safetensors")
    folder = Path(loaded.spec.removeprefix("hf:"))
    again = load_model(loaded.spec, weights=tmp_path / "old.safetensors", card=folder / "card.json")
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        assert torch.allclose(again.module(x), loaded.module(x))
