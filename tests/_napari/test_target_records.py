"""Heatmaps of a prompt, a region or several classes: their names, records and saved sessions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from napari.layers import Image

from napari_gradcam._napari.annotations.session_io import _heatmap_layer
from napari_gradcam._napari.explain.job import ExplainJob, JobOutcome, RegionResult
from napari_gradcam._napari.plane import Plane
from napari_gradcam._napari.records import HeatmapRecord
from napari_gradcam._napari.regions import whole_layer_box
from napari_gradcam._napari.result_layers import heatmap_layer
from napari_gradcam._napari.target_words import score_text, target_in_words
from napari_gradcam.core.explain.explanation import Explanation
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.targets import (
    Classes,
    Contrast,
    LikeEmbedding,
    OutputRegion,
    Prompt,
)
from napari_gradcam.review.session import (
    ImageRef,
    SavedHeatmap,
    Session,
    load_session,
    save_session,
)

MASK = np.zeros((16, 24), bool)
MASK[4:8, 2:12] = True
TARGETS = {
    "prompt": (Prompt(("nuclei-dense tissue",)), 0.314, math.nan, "similarity 0.31"),
    "like": (LikeEmbedding((0.6, 0.8), "tumour, shape 3"), 0.92, math.nan, "similarity 0.92"),
    "output": (OutputRegion("nuclei", MASK, "shape 2"), 41.5, math.nan, "score 41.5"),
    "classes": (Classes(("tumour", "necrosis")), 3.2, 0.81, "p=0.81"),
    "contrast": (Contrast("tumour"), 1.7, 0.66, "p=0.66"),
}


def explained(target, score: float, probability: float) -> RegionResult:
    """One explained crop of 64 x 96 px (stride 4) whose target is ``target``."""
    explanation = Explanation(
        cam=np.linspace(0, 1, 16 * 24, dtype=np.float32).reshape(16, 24),
        method="gradcam",
        layer="features.4",
        targets=np.array([1]),
        target_names=(target_in_words(target),),
        scores=np.array([score]),
        probabilities=np.array([probability]),
        stride=(4.0, 4.0),
        origin=(0.0, 0.0),
        input_shape=(64, 96),
    )
    box = whole_layer_box((64, 96))
    return RegionResult.on_crop(
        box, explanation, (0.0, 0.0), (1.0, 1.0), 0, ExplainSettings(target=target)
    )


@pytest.fixture
def image() -> Image:
    return Image(np.zeros((64, 96, 3), np.uint8), name="H&E", scale=(0.5, 0.5), translate=(3, 4))


@pytest.mark.parametrize("kind", list(TARGETS))
def test_the_layer_name_and_record_say_what_was_explained(kind, image):
    target, score, probability, said = TARGETS[kind]
    job = ExplainJob("demo-vlm", settings=ExplainSettings(), plane=Plane((image.data,), ((1, 1),)))
    result = explained(target, score, probability)
    _data, kwargs, _kind = heatmap_layer(result, image, job)
    described = target_in_words(target)
    assert kwargs["name"] == f"Grad-CAM · {described} · demo-vlm"
    record = HeatmapRecord.from_facts(kwargs["metadata"]["napari_gradcam"])
    assert record.target_name == described and record.score_text == said
    assert record.score == pytest.approx(score)
    assert record.target_index is None and record.settings.target is not None
    assert result.label == f"{described} {said}"
    outcome = JobOutcome((result,), seconds=1.0)
    assert outcome.summary() == f"{described} {said} (1.0 s)"


def test_a_prompt_map_keeps_its_target_through_a_saved_session(image, tmp_path):
    job = ExplainJob("demo-vlm", plane=Plane((image.data,), ((1, 1),)))
    result = explained(Prompt(("tumour cells", "mitoses")), 0.28, math.nan)
    data, kwargs, _kind = heatmap_layer(result, image, job)
    saved = SavedHeatmap(kwargs["name"], data, kwargs["metadata"]["napari_gradcam"])
    save_session(tmp_path / "review", Session(ImageRef("H&E"), [saved]))
    (loaded,) = load_session(tmp_path / "review").heatmaps
    record = HeatmapRecord.of(_heatmap_layer(loaded, image))
    assert record.settings.target == Prompt(("tumour cells", "mitoses"))
    assert record.target_name == target_in_words(Prompt(("tumour cells", "mitoses")))
    assert record.probability is None and record.score_text == "similarity 0.28"


def test_an_output_region_keeps_its_label_and_area_not_its_mask(image, tmp_path):
    job = ExplainJob("demo-seg", plane=Plane((image.data,), ((1, 1),)))
    result = explained(OutputRegion("nuclei", MASK, "shape 2"), 41.5, math.nan)
    data, kwargs, _kind = heatmap_layer(result, image, job)
    facts = kwargs["metadata"]["napari_gradcam"]
    assert facts["target"]["label"] == "shape 2" and facts["target"]["mask_pixels"] == 40
    saved = SavedHeatmap(kwargs["name"], data, kwargs["metadata"]["napari_gradcam"])
    save_session(tmp_path / "review", Session(ImageRef("H&E"), [saved]))
    (loaded,) = load_session(tmp_path / "review").heatmaps
    target = HeatmapRecord.of(_heatmap_layer(loaded, image)).settings.target
    assert isinstance(target, OutputRegion) and target.mask is None
    assert (target.target_class, target.label) == ("nuclei", "shape 2")


def test_a_class_map_is_recorded_as_before(image):
    job = ExplainJob("demo", plane=Plane((image.data,), ((1, 1),)))
    result = explained("tumour", 2.0, 0.75)
    _data, kwargs, _kind = heatmap_layer(result, image, job)
    facts = kwargs["metadata"]["napari_gradcam"]
    assert "target" not in facts and facts["target_index"] == 1
    assert facts["probability"] == 0.75 and kwargs["name"] == "Grad-CAM · tumour · demo"
    assert result.label == "tumour p=0.75"


@pytest.mark.parametrize(
    ("target", "score", "probability", "said"),
    [
        ("tumour", 2.0, 0.871, "p=0.87"),
        (Prompt(("a",)), 0.314, math.nan, "similarity 0.31"),
        (Prompt(("a",)), 0.314, 0.5, "similarity 0.31"),
        (OutputRegion(1, None), 12.25, None, "score 12.2"),
        ("tumour", None, None, ""),
    ],
)
def test_score_text(target, score, probability, said):
    assert score_text(target, score, probability) == said


def test_an_output_regions_area_survives_a_second_save(image):
    job = ExplainJob("demo-seg", plane=Plane((image.data,), ((1, 1),)))
    result = explained(OutputRegion("nuclei", MASK, "shape 2"), 41.5, math.nan)
    facts = heatmap_layer(result, image, job)[1]["metadata"]["napari_gradcam"]
    again = HeatmapRecord.from_facts(HeatmapRecord.from_facts(facts).to_facts()).to_facts()
    assert again["target"] == facts["target"]  # read, written, read: label and area kept
