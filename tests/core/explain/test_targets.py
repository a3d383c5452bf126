"""Every target kind against a direct Grad-CAM written out by hand for that kind's score.

The reference hooks the layer, computes the kind's score from the raw output with plain torch
(no package code), differentiates it and forms Grad-CAM (channel weights = mean gradient,
ReLU of the weighted sum). ``explain`` must give the same map for every method-independent
part: the score, its gradient and the names it reports.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_gradcam.core.card import ModelCard
from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.predict import predict
from napari_gradcam.core.explain.region_embedding import embed_region
from napari_gradcam.core.explain.targets import bind_target
from napari_gradcam.core.loaded_model import LoadedModel
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import (
    Classes,
    Contrast,
    LikeEmbedding,
    OutputRegion,
    Prompt,
    describe_target,
    target_from_metadata,
    target_to_metadata,
)
from napari_gradcam.core.text_encoder import TextEncoder

CLASSES = ("background", "stroma", "tumour", "necrosis")


def _trunk() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1, stride=2)
    )


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = _trunk()
        self.head = nn.Linear(12, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).relu().mean(dim=(2, 3)))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = _trunk()
        self.project = nn.Linear(12, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x).relu().mean(dim=(2, 3)))


class Segmenter(nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.features = _trunk()
        self.head = nn.Conv2d(12, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).relu())  # (N, C, H/2, W/2)


def _card(output: str = "classes", classes: tuple[str, ...] = CLASSES) -> ModelCard:
    return ModelCard(
        classes=classes,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        default_layer="features.2",
        output=output,
    )


def _reference_cam(model: nn.Module, batch: torch.Tensor, score_of) -> torch.Tensor:
    """Grad-CAM at ``features.2`` of ``score_of(output)`` (N,), written out directly."""
    kept = {}
    handle = model.features[2].register_forward_hook(lambda _m, _i, out: kept.update(a=out))
    try:
        with torch.enable_grad():
            scores = score_of(model(batch))
            (grad,) = torch.autograd.grad(scores.sum(), kept["a"])
    finally:
        handle.remove()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * kept["a"]).sum(dim=1).relu().detach()


def _batch(seed: int = 0, n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def classifier() -> nn.Module:
    torch.manual_seed(0)
    return Classifier().eval()


def test_several_classes_explain_the_sum_of_their_logits(classifier):
    batch = _batch()
    found = explain(classifier, batch, target=Classes(("stroma", 3)), card=_card())
    expected = _reference_cam(classifier, batch, lambda y: y[:, 1] + y[:, 3])
    np.testing.assert_allclose(found.cam, expected.numpy(), rtol=1e-4, atol=1e-6)
    probabilities = torch.softmax(classifier(batch), dim=1).detach()
    np.testing.assert_allclose(found.probabilities, probabilities[:, [1, 3]].sum(1), rtol=1e-5)
    assert found.target_names == ("stroma + necrosis",) * 2


def test_contrast_with_the_nearest_class_is_finer_cams_difference(classifier):
    """Finer-CAM with one comparison class: pytorch-grad-cam's FinerWeightedTarget reduces to
    logit(main) - alpha * logit(nearest); the nearest class is each image's runner-up."""
    batch = _batch(1, n=3)
    logits = classifier(batch).detach()
    main = 2
    others = logits.clone()
    others[:, main] = -torch.inf
    nearest = others.argmax(dim=1)

    def finer(y: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(y, dim=1)
        rows = torch.arange(len(y))
        weight = probabilities[rows, nearest]
        difference = weight * (y[:, main] - 0.7 * y[rows, nearest])
        return difference / (weight + 1e-9)

    found = explain(classifier, batch, target=Contrast("tumour", alpha=0.7), card=_card())
    expected = _reference_cam(classifier, batch, finer)
    np.testing.assert_allclose(found.cam, expected.numpy(), rtol=1e-3, atol=1e-5)
    assert found.target_names == tuple(f"tumour vs {CLASSES[i]}" for i in nearest.tolist())
    np.testing.assert_array_equal(found.targets, [main] * 3)


def test_contrast_against_a_named_class(classifier):
    batch = _batch(2)
    found = explain(classifier, batch, target=Contrast(2, against="stroma"), card=_card())
    expected = _reference_cam(classifier, batch, lambda y: y[:, 2] - y[:, 1])
    np.testing.assert_allclose(found.cam, expected.numpy(), rtol=1e-4, atol=1e-6)
    assert found.target_names == ("tumour vs stroma",) * 2


def _text_encoder(table: dict[str, torch.Tensor], calls: list[list[str]]) -> TextEncoder:
    def encode(prompts: list[str]) -> torch.Tensor:
        calls.append(list(prompts))
        return torch.stack([table[p] for p in prompts])

    return TextEncoder(encode, template="an image of {}")


def test_a_prompt_explains_the_cosine_with_the_mean_text_embedding():
    torch.manual_seed(1)
    encoder = Encoder().eval()
    texts = {"an image of tumour": torch.randn(6), "an image of cancer": torch.randn(6)}
    calls: list[list[str]] = []
    loaded = LoadedModel(
        encoder, _card("embedding"), "test", "factory", text=_text_encoder(texts, calls)
    )
    batch = _batch(3)
    found = explain(loaded, batch, target=Prompt(("tumour", "cancer")))
    units = [F.normalize(v, dim=0) for v in texts.values()]
    reference = F.normalize(torch.stack(units).mean(dim=0), dim=0)

    def cosine(y: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(y, reference[None], dim=1)

    np.testing.assert_allclose(found.cam, _reference_cam(encoder, batch, cosine), rtol=1e-4)
    np.testing.assert_allclose(found.scores, cosine(encoder(batch)).detach(), rtol=1e-5)
    assert np.isnan(found.probabilities).all()
    assert found.target_names == ("prompt 'tumour; cancer'",) * 2
    explain(loaded, batch, target=Prompt(("cancer",)))
    assert calls == [["an image of tumour", "an image of cancer"]]  # cached per prompt


def test_the_text_cache_empties_when_the_tower_changes_in_place():
    weight = torch.ones(6)
    calls: list[list[str]] = []

    def encode(prompts: list[str]) -> torch.Tensor:
        calls.append(prompts)
        return torch.stack([weight * len(p) for p in prompts])

    text = TextEncoder(encode, parameters=lambda: [weight])
    first = text.embed(["tumour"])
    text.embed(["tumour"])
    assert len(calls) == 1
    with torch.no_grad():
        weight[0] = 5.0
    second = text.embed(["tumour"])
    assert len(calls) == 2
    assert not torch.allclose(first, second)
    assert text.embed(["x"], template="a {} b").shape == (1, 6)
    assert calls[-1] == ["a x b"]
    text.embed(["y"], template="{0.__class__} {} {name}")  # braces of a card's template: text
    assert calls[-1] == ["{0.__class__} y {name}"]


def test_like_a_region_is_the_cosine_with_the_regions_embedding():
    torch.manual_seed(2)
    encoder = Encoder().eval()
    card = ModelCard(mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(16, 16), output="embedding")
    rng = np.random.default_rng(0)
    region = rng.integers(0, 255, (40, 24, 3), dtype=np.uint8)
    like = embed_region(encoder, region, card, label="Shape 1")
    tiles = [region[y : y + 16, x : x + 16] for y in (0, 16, 24) for x in (0, 8)]
    units = []
    for tile in tiles:
        batch = torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 255
        units.append(F.normalize(encoder((batch - 0.5) / 0.25), dim=1)[0])
    expected = F.normalize(torch.stack(units).mean(dim=0), dim=0)
    np.testing.assert_allclose(like.embedding, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    image = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    found = explain(encoder, image, target=like, card=card)
    assert found.target_names == ("like 'Shape 1'",)
    batch = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.25
    np.testing.assert_allclose(
        found.cam,
        _reference_cam(encoder, batch, lambda y: F.cosine_similarity(y, expected[None]))[0],
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("tta", [False, True])
def test_an_output_region_sums_the_class_logits_inside_the_mask(tta):
    """SemanticSegmentationTarget: (output[class] * mask).sum(), with the mask brought to the
    output grid by area; under TTA the mask flips with each copy."""
    torch.manual_seed(3)
    model = Segmenter().eval()
    batch = _batch(4, n=1)
    mask = np.zeros((16, 16), bool)
    mask[2:9, 5:14] = True
    target = OutputRegion("stroma", mask, label="Shape 2")
    card = _card("dense", CLASSES[:3])
    found = explain(model, batch, ExplainSettings(target=target, tta=tta), card=card)
    area = F.avg_pool2d(torch.from_numpy(mask).float()[None, None], 2)[:, 0]

    def inside(y: torch.Tensor, area: torch.Tensor = area) -> torch.Tensor:
        return (y[:, 1] * area).sum(dim=(1, 2))

    if not tta:
        np.testing.assert_allclose(found.cam, _reference_cam(model, batch, inside), rtol=1e-4)
    else:
        flips = ((), (-1,), (-2,), (-2, -1))
        maps = []
        for dims in flips:
            flipped = batch.flip(dims) if dims else batch
            flipped_area = area.flip(dims) if dims else area
            cam = _reference_cam(model, flipped, lambda y, a=flipped_area: inside(y, a))[0]
            maps.append(cam.flip(dims) if dims else cam)
        np.testing.assert_allclose(found.cam[0], torch.stack(maps).mean(0), rtol=1e-4, atol=1e-6)
    assert found.target_names == ("stroma in 'Shape 2'",)
    probabilities = torch.softmax(model(batch), dim=1)[0, 1].detach()
    mean_inside = (probabilities * area[0]).sum() / area.sum()
    assert found.probabilities[0] == pytest.approx(float(mean_inside), rel=1e-5)


def test_one_mask_per_image_and_a_whole_output_region():
    torch.manual_seed(4)
    model = Segmenter().eval()
    batch = _batch(5, n=2)
    masks = np.zeros((2, 16, 16), bool)
    masks[0, :8] = True
    masks[1, 8:, 8:] = True
    card = _card("dense", CLASSES[:3])
    found = explain(model, batch, target=OutputRegion(2, masks), card=card)
    areas = F.avg_pool2d(torch.from_numpy(masks).float()[:, None], 2)[:, 0]
    expected = _reference_cam(model, batch, lambda y: (y[:, 2] * areas).sum(dim=(1, 2)))
    np.testing.assert_allclose(found.cam, expected, rtol=1e-4, atol=1e-6)
    whole = explain(model, batch, target=OutputRegion(2), card=card)
    expected = _reference_cam(model, batch, lambda y: y[:, 2].sum(dim=(1, 2)))
    np.testing.assert_allclose(whole.cam, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "occlusion", "gradcam++"])
def test_every_method_scores_a_region_and_a_prompt_through_the_head(method):
    """Masked-forward and gradient methods all score with the bound target: a region's map and
    the scores they report agree with the direct scores of the output."""
    torch.manual_seed(5)
    model = Segmenter().eval()
    batch = _batch(6, n=2)
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    found = explain(
        model, batch, method=method, target=OutputRegion(1, mask), card=_card("dense", CLASSES[:3])
    )
    area = F.avg_pool2d(torch.from_numpy(mask).float()[None, None], 2)[:, 0]
    expected = (model(batch)[:, 1] * area).sum(dim=(1, 2)).detach()
    np.testing.assert_allclose(found.scores, expected, rtol=1e-4)
    assert np.isfinite(found.cam).all() and found.cam.max() > 0


def test_a_single_channel_dense_output_is_a_sigmoid_map():
    torch.manual_seed(6)
    model = Segmenter(channels=1).eval()
    batch = _batch(7, n=1)
    card = _card("dense", ("background", "nuclei"))
    found = explain(model, batch, target=OutputRegion("background"), card=card)
    expected = _reference_cam(model, batch, lambda y: -y[:, 0].sum(dim=(1, 2)))
    np.testing.assert_allclose(found.cam, expected, rtol=1e-4, atol=1e-6)
    probability = (1 - torch.sigmoid(model(batch)[0, 0])).mean().detach()
    assert found.probabilities[0] == pytest.approx(float(probability), rel=1e-5)


def test_predict_reports_each_kind(classifier):
    batch = _batch(8)
    found = predict(classifier, batch, target=Classes((0, 1)), card=_card())
    probabilities = torch.softmax(classifier(batch), dim=1).detach()
    np.testing.assert_allclose(found.target_probability, probabilities[:, :2].sum(1), rtol=1e-5)


@pytest.mark.parametrize(
    ("model_output", "target", "words"),
    [
        ("classes", Prompt(("tumour",)), "card 'output': 'embedding'"),
        ("classes", OutputRegion(1), "needs a model whose output is dense"),
        ("embedding", 2, "explain a prompt or a likeness"),
        ("dense", Classes((0, 1)), "explain an output region"),
        ("embedding", Prompt(("tumour",)), "load a vision-language model"),
    ],
)
def test_a_target_that_does_not_fit_the_model_is_refused(model_output, target, words):
    with pytest.raises(ValueError, match=words):
        bind_target(target, _card(model_output))


def test_bad_targets_are_refused_with_what_to_do(classifier):
    with pytest.raises(ValueError, match="two or more different classes"):
        Classes((1,))
    with pytest.raises(ValueError, match="against itself"):
        Contrast(1, against=1)
    with pytest.raises(ValueError, match="non-empty text"):
        Prompt(("  ",))
    with pytest.raises(ValueError, match=r"holds '\{\}' once"):
        Prompt(("a",), template="no slot")
    with pytest.raises(ValueError, match="a short phrase per idea"):
        Prompt(("nuclei " * 200,))
    with pytest.raises(ValueError, match="zeros"):
        LikeEmbedding((0.0, 0.0))
    with pytest.raises(ValueError, match="empty"):
        OutputRegion(1, np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="out of range"):
        explain(classifier, _batch(), target=Classes((0, 9)), card=_card())
    model = Segmenter().eval()
    with pytest.raises(ValueError, match="rasterise the region"):
        explain(model, _batch(), target=OutputRegion(1, np.ones((8, 8), bool)), card=_card("dense"))
    encoder = Encoder().eval()
    with pytest.raises(ValueError, match="embed the reference with this same model"):
        explain(encoder, _batch(), target=LikeEmbedding((1.0, 2.0)), card=_card("embedding"))


@pytest.mark.parametrize(
    "target",
    [
        2,
        ("tumour", 1),
        Classes(("tumour", "necrosis")),
        Contrast("tumour", alpha=0.5),
        Prompt(("nuclei", "dense nuclei"), template="an H&E tile of {}."),
        LikeEmbedding((0.5, -0.5, 1.0), label="Shape 3"),
    ],
)
def test_targets_round_trip_through_settings_metadata(target):
    settings = ExplainSettings(target=target)
    assert ExplainSettings.from_metadata(settings.to_metadata()).target == target


def test_a_recorded_region_keeps_its_label_and_asks_for_the_mask_again():
    mask = np.zeros((8, 8), bool)
    mask[:3] = True
    facts = target_to_metadata(OutputRegion("stroma", mask, label="Shape 2"))
    assert facts == {
        "kind": "output_region",
        "target_class": "stroma",
        "label": "Shape 2",
        "mask_pixels": 24,
    }
    recorded = target_from_metadata(facts)
    assert describe_target(recorded, _card("dense")) == "stroma in 'Shape 2'"
    with pytest.raises(ValueError, match="draw the region again"):
        bind_target(recorded, _card("dense"))
    whole = target_from_metadata(target_to_metadata(OutputRegion(1)))
    assert bind_target(whole, _card("dense")).dense
    with pytest.raises(ValueError, match="unknown target kind"):
        target_from_metadata({"kind": "wish"})
