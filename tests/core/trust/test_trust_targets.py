"""The trust checks with every target kind: the curves follow what the map explains, held fixed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.output_files import json_text
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import Classes, Contrast, LikeEmbedding, OutputRegion, Prompt
from napari_gradcam.core.trust.faithfulness import baseline_batch, deletion_insertion
from napari_gradcam.core.trust.report import trust_report
from napari_gradcam.core.trust.sanity import fixed_target, sanity_check
from tests.target_models import classifier, encoder, segmenter, toy_text

FAST = dict(sanity_steps=2, curve_steps=4)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models():
    return {"classes": classifier(), "embedding": encoder(), "dense": segmenter()}


def batch_of(loaded, image) -> torch.Tensor:
    return to_batch(image, loaded.card, torch.device("cpu"))


def outputs(loaded, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.module(images)


def test_prompt_curves_follow_the_similarity_from_intact_to_baseline(models, image):
    vl = models["embedding"]
    batch = batch_of(vl, image)
    saliency = np.random.default_rng(0).random((8, 8))
    curves = deletion_insertion(vl, batch, saliency, Prompt(("dense nuclei",)), steps=4)
    text = F.normalize(toy_text(["an image of dense nuclei"])[0], dim=0)
    intact, blurred = (
        float(F.cosine_similarity(outputs(vl, x)[0], text, dim=0))
        for x in (batch, baseline_batch(batch))
    )
    assert curves.measure == "score"
    assert curves.deletion[0] == pytest.approx(intact, abs=1e-5)
    assert curves.insertion[-1] == pytest.approx(intact, abs=1e-5)
    assert curves.deletion[-1] == pytest.approx(blurred, abs=1e-5)
    assert curves.insertion[0] == pytest.approx(blurred, abs=1e-5)
    with pytest.raises(ValueError, match="no probability"):
        deletion_insertion(vl, batch, saliency, Prompt(("x",)), measure="probability")


def test_a_contrast_keeps_the_nearest_class_of_the_intact_image(models, image):
    model = models["classes"]
    batch = batch_of(model, image)
    logits = outputs(model, batch)[0]
    nearest = int(torch.topk(logits, 2).indices[1])
    main = int(logits.argmax())
    saliency = np.random.default_rng(1).random((8, 8))
    curves = deletion_insertion(
        model, batch, saliency, Contrast(main, alpha=0.5), steps=4, measure="logit"
    )
    baseline = outputs(model, baseline_batch(batch))[0]
    assert curves.deletion[0] == pytest.approx(float(logits[main] - 0.5 * logits[nearest]), 1e-5)
    expected = float(baseline[main] - 0.5 * baseline[nearest])
    assert curves.deletion[-1] == pytest.approx(expected, rel=1e-5)


def test_an_output_region_curve_sums_the_class_inside_the_region(models, image):
    seg = models["dense"]
    batch = batch_of(seg, image)
    mask = np.zeros((32, 32), bool)
    mask[4:20, 8:28] = True
    saliency = np.random.default_rng(2).random((8, 8))
    target = OutputRegion("nuclei", mask, "cells")
    curves = deletion_insertion(seg, batch, saliency, target, steps=4, measure="logit")
    share = mask.reshape(8, 4, 8, 4).mean(axis=(1, 3))
    intact = float((outputs(seg, batch)[0, 1].numpy() * share).sum())
    assert curves.deletion[0] == pytest.approx(intact, rel=1e-4)


def test_the_randomisation_cascade_asks_the_same_prompt_of_the_scrambled_image_tower(models, image):
    vl = models["embedding"]
    batch = batch_of(vl, image)
    settings = ExplainSettings(target=Prompt(("dense nuclei",)))
    original = explain(vl, batch, settings)
    check = sanity_check(vl, batch, original, settings, steps=2, repeats=1)
    assert check.target is None and len(check.steps) == 2
    assert check.depends_on_weights is not None


def test_the_question_held_fixed_is_the_one_the_map_answered(models, image):
    model = models["classes"]
    batch = batch_of(model, image)
    original = explain(model, batch, target=Contrast("a", alpha=0.5))
    logits = outputs(model, batch)[0]
    logits[0] = -torch.inf
    nearest = int(logits.argmax())
    held = fixed_target(original, Contrast("a", alpha=0.5), model.card)
    assert held == Contrast("a", nearest, 0.5)
    top = explain(model, batch)
    assert fixed_target(top, None, model.card) == (int(top.targets[0]),)
    assert fixed_target(top, Classes(("a", "b")), model.card) == Classes(("a", "b"))


def kinds(image: np.ndarray) -> list[tuple[str, object]]:
    mask = np.zeros(image.shape[:2], bool)
    mask[8:24, 8:24] = True
    like = LikeEmbedding(tuple(np.linspace(-1, 1, 8)), "reference")
    return [
        ("classes", Classes(("a", "b"))),
        ("classes", Contrast("a")),
        ("embedding", Prompt(("dense nuclei", "tumour"))),
        ("embedding", like),
        ("dense", OutputRegion("nuclei", mask, "cells")),
    ]


@pytest.mark.parametrize("index", range(5), ids=["classes", "contrast", "prompt", "like", "region"])
def test_the_trust_report_runs_for_every_kind_and_says_what_it_checked(models, image, index):
    output, target = kinds(image)[index]
    loaded = models[output]
    report = trust_report(loaded, image, settings=ExplainSettings(target=target), **FAST)
    facts = json.loads(json_text(report.to_dict()))
    assert facts["target_name"] == report.target_name and report.headline
    if output == "embedding":
        assert report.faithfulness.measure == "score" and report.target is None
        assert f"score {report.score:.2f}" in report.headline
        assert np.isnan(report.probability)
    else:
        assert report.faithfulness.measure in ("probability", "logit")
