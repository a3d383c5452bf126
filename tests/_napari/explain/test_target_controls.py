"""The Explain dock's target kinds: offered per model, read into targets, regions cut aligned."""

import json

import numpy as np
import pytest

from napari_gradcam._napari.explain import recent_prompts as recent_module
from napari_gradcam._napari.explain.region_query import LikeRegion, OutputMask, PlaneMask
from napari_gradcam._napari.explain.target_controls import (
    CLASS,
    CONTRAST,
    KINDS,
    LIKE,
    NEAREST,
    OUTPUT,
    PROMPT,
    SEVERAL,
    TargetControls,
)
from napari_gradcam._napari.model_events import ModelInfo
from napari_gradcam._napari.plane import Crop
from napari_gradcam._napari.regions import Box
from napari_gradcam.core.targets import Classes, Contrast, Prompt

CLASSES = ("stroma", "tumour", "necrosis")


def info(output: str = "classes", text: bool | None = None) -> ModelInfo:
    classes = CLASSES if output != "embedding" else ()
    return ModelInfo("model", None, classes, (), output=output, text=text)


@pytest.fixture
def controls(make_napari_viewer):
    viewer = make_napari_viewer()
    found = TargetControls(viewer)
    found.offer(info())
    return viewer, found


def offered(controls: TargetControls) -> set[str]:
    return {kind for kind in KINDS if controls.reason_unavailable(kind) is None}


@pytest.mark.parametrize(
    ("output", "text", "kinds"),
    [
        ("classes", None, {CLASS, SEVERAL, CONTRAST}),
        ("embedding", True, {PROMPT, LIKE}),
        ("embedding", None, {PROMPT, LIKE}),  # a text tower is known once the model is loaded
        ("embedding", False, {LIKE}),
        ("dense", None, {OUTPUT}),
    ],
)
def test_only_the_kinds_the_model_answers_are_offered(controls, output, text, kinds):
    _viewer, found = controls
    found.offer(info(output, text))
    assert offered(found) == kinds
    assert found.kind.value in kinds  # an unanswerable choice moved to one it answers


def test_a_greyed_kind_says_why(controls):
    _viewer, found = controls
    assert "vision-language model" in found.reason_unavailable(PROMPT)
    assert "this model is a classifier" in found.reason_unavailable(PROMPT)
    assert "segmentation model" in found.reason_unavailable(OUTPUT)
    found.offer(info("embedding", text=False))
    assert "no text tower" in found.reason_unavailable(PROMPT)
    assert "classifier" in found.reason_unavailable(CLASS)
    found.kind.value = PROMPT  # set from code: the dock refuses it with the same words
    with pytest.raises(ValueError, match="no text tower"):
        found.target_value()


def test_only_the_chosen_kinds_controls_show(controls):
    _viewer, found = controls
    shown = {}
    for kind in (CLASS, SEVERAL, CONTRAST):
        found.kind.value = kind
        shown[kind] = {c.label for c in found.controls[1:] if c.visible}
    assert shown == {CLASS: {"class"}, SEVERAL: {"classes"}, CONTRAST: {"class", "against"}}


def test_class_kinds_build_their_targets(controls):
    _viewer, found = controls
    assert found.target_value() is None  # "predicted"
    found.target.value = "tumour"
    assert found.target_value() == "tumour"
    found.kind.value = SEVERAL
    found.several.value = ["tumour", "necrosis"]
    assert found.target_value() == Classes(("tumour", "necrosis"))
    found.several.value = ["tumour"]
    with pytest.raises(ValueError, match="two or more classes"):
        found.target_value()
    found.kind.value = CONTRAST
    found.main.value, found.against.value = "tumour", NEAREST
    assert found.target_value() == Contrast("tumour", None)
    found.against.value = "stroma"
    assert found.target_value() == Contrast("tumour", "stroma")
    found.against.value = "tumour"
    with pytest.raises(ValueError, match="another class"):
        found.target_value()


def test_a_prompt_and_an_ensemble(controls):
    _viewer, found = controls
    found.offer(info("embedding", text=True))
    found.kind.value = PROMPT
    found.prompt_text = "  nuclei-dense tissue "
    assert found.target_value() == Prompt(("nuclei-dense tissue",))
    found.prompt_text = "tumour cells; mitoses ;"
    assert found.target_value() == Prompt(("tumour cells", "mitoses"))
    found.prompt_text = " ; "
    with pytest.raises(ValueError, match="type a prompt"):
        found.target_value()


def test_recent_prompts_are_remembered_across_sessions_and_capped(controls, make_napari_viewer):
    _viewer, found = controls
    for number in range(12):
        found.remember(Prompt((f"prompt {number}",)))
    found.remember(Prompt(("prompt 5",)))  # again: moves to the top, once
    found.remember(Prompt(("tumour", "necrosis")))
    expected = ["tumour; necrosis", "prompt 5", *(f"prompt {n}" for n in (11, 10, 9, 8, 7, 6))]
    expected += ["prompt 4", "prompt 3"]
    assert recent_module.recent_prompts() == expected
    assert list(found.prompt.choices) == expected and found.prompt_text == "tumour; necrosis"
    later = TargetControls(make_napari_viewer())  # a new session reads them back
    assert list(later.prompt.choices) == expected
    found.remember("tumour")  # a class is no prompt: nothing remembered
    assert recent_module.recent_prompts() == expected


def test_an_unreadable_prompt_list_offers_none(controls):
    path = recent_module.recent_prompts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    assert recent_module.recent_prompts() == []
    path.write_text(json.dumps({"prompts": ["a", 3, " "]}), encoding="utf-8")
    assert recent_module.recent_prompts() == ["a"]


def add_image(viewer, scale=(2.0, 0.5), translate=(10.0, 20.0)):
    data = np.zeros((60, 80, 3), np.uint8)
    return viewer.add_image(data, scale=scale, translate=translate, name="slide")


def test_a_shape_cuts_its_pixels_from_the_image_under_both_transforms(controls):
    viewer, found = controls
    found.offer(info("embedding", text=False))
    image = add_image(viewer)
    # world y 30..50 -> image rows (30-10)/2 = 10..20; world x 25..30 -> cols 10..20,
    # drawn on a Shapes layer with its own scale and translate
    world = np.array([[30.0, 25.0], [30.0, 30.0], [50.0, 30.0], [50.0, 25.0]])
    shapes = viewer.add_shapes(
        (world - [4.0, -6.0]) / 4.0, shape_type="rectangle", scale=(4, 4), translate=(4, -6)
    )
    found.kind.value = LIKE
    assert found.region_layer.value is shapes and found.shape.visible
    shapes.add(np.array([[8.0, 7.0], [12, 7], [12, 9]]), shape_type="polygon")
    assert found.shape.choices == (-1, 0, 1)  # the list follows the layer's new shape
    shapes.selected_data = set()
    with pytest.raises(ValueError, match="select one shape of 'Shapes'"):
        found.region_target(image, (60, 80))
    shapes.selected_data = {0}
    region = found.region_target(image, (60, 80))
    assert isinstance(region, LikeRegion) and region.label == "shape 1"
    assert region.region.box == Box(10, 10, 21, 21, "shape 1")
    assert region.region.mask.all() and region.region.area == 11 * 11
    found.shape.value = 1  # picked by name: the small triangle, not the selected shape
    assert found.region_target(image, (60, 80)).label == "shape 2"


def test_an_annotation_label_names_the_region(controls):
    viewer, found = controls
    found.offer(info("embedding"))
    image = add_image(viewer, scale=(1, 1), translate=(0, 0))
    viewer.add_shapes(
        [np.array([[5.0, 5], [5, 15], [15, 15], [15, 5]])],
        shape_type="rectangle",
        features={"label": ["tumour"]},
    )
    found.kind.value = LIKE
    assert found.region_target(image, (60, 80)).label == "tumour, shape 1"
    assert found.shape.choices == (-1, 0)  # "selected shape", then each shape
    assert found.shape.native.itemText(1) == "tumour, shape 1 (rectangle)"


def test_a_labels_region_is_rasterised_in_the_image_pixels(controls):
    viewer, found = controls
    found.offer(info("dense"))
    image = add_image(viewer, scale=(1, 1), translate=(0, 0))
    painted = np.zeros((20, 20), np.uint8)
    painted[3, 5] = 2
    # labels pixel (3, 5) spans world rows 17.5..20.5 and columns 33.5..36.5
    labels = viewer.add_labels(painted, scale=(3, 3), translate=(10, 20), name="labels")
    found.kind.value = OUTPUT
    found.region_layer.value = labels
    assert found.label_value.visible and not found.shape.visible
    found.label_value.value = 1
    with pytest.raises(ValueError, match="no pixel labelled 1"):
        found.region_target(image, (60, 80))
    found.label_value.value = 2
    found.main.value = "necrosis"
    region = found.region_target(image, (60, 80))
    assert isinstance(region, OutputMask) and region.target_class == "necrosis"
    assert region.region.box == Box(18, 34, 21, 37, "label 2") and region.region.mask.all()
    assert region.label == "labels label 2"


def test_a_shape_off_the_image_is_refused(controls):
    viewer, found = controls
    found.offer(info("dense"))
    image = add_image(viewer, scale=(1, 1), translate=(0, 0))
    viewer.add_shapes([np.array([[500.0, 500], [500, 600], [600, 600]])], shape_type="polygon")
    found.kind.value = OUTPUT
    with pytest.raises(ValueError, match="covers no pixel of 'slide'"):
        found.region_target(image, (60, 80))


def test_an_output_mask_follows_the_crop_it_is_explained_on():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    region = OutputMask("nuclei", PlaneMask(Box(10, 20, 14, 26), mask), "shape 1")
    # a crop of level-0 rows 8..16 and columns 20..28 read at half resolution
    crop = Crop(np.zeros((4, 4, 3)), origin=(8.0, 20.0), downsample=(2.0, 2.0))
    target = region.on_crop(crop, "whole layer")
    # crop pixel (r, c) centres on level-0 (8.5 + 2r, 20.5 + 2c), rounded to even: 8, 10, 12, 14
    expected = np.zeros((4, 4), bool)
    expected[2, 1:3] = True  # level-0 row 12 (mask row 2), columns 22 and 24 (mask 2 and 4)
    np.testing.assert_array_equal(target.mask, expected)
    assert target.target_class == "nuclei" and target.label == "shape 1"
    far = Crop(np.zeros((4, 4, 3)), origin=(100.0, 100.0), downsample=(1.0, 1.0))
    with pytest.raises(ValueError, match="outside the rectangle 0"):
        region.on_crop(far, "rectangle 0")
