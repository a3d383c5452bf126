"""Every target kind through ``napari-gradcam explain``: the score each JSON records is the one a
direct computation on the model's output gives, and the files say what was explained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import napari_gradcam
from napari_gradcam.cli import main
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.regions.geojson import Annotation, write_geojson
from napari_gradcam.core.regions.polygons import Polygon
from tests.target_models import MODELS, toy_text

HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def built():
    return {spec: make() for spec, make in MODELS.items()}


@pytest.fixture
def models(monkeypatch, built):
    monkeypatch.setattr(napari_gradcam, "load_model", lambda spec, **_: built[spec])
    return built


@pytest.fixture
def image_path(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    return path


def raw_output(loaded, pixels: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return loaded.module(to_batch(pixels, loaded.card, torch.device("cpu")))


def run(image_path, tmp_path, model: str, *flags: str) -> int:
    out = str(tmp_path / "o")
    return main(["explain", str(image_path), "--model", model, "--out", out, *flags])


def record(tmp_path, name: str) -> dict:
    return json.loads((tmp_path / "o" / name).read_text())


def test_classes_are_summed_and_named(models, image_path, tmp_path, capsys):
    assert run(image_path, tmp_path, "toy-classes", "--classes", "a,c") == 0
    found = record(tmp_path, "x.classes-a-c.json")
    logits = raw_output(models["toy-classes"], np.asarray(Image.open(image_path)))[0]
    assert found["score"] == pytest.approx(float(logits[0] + logits[2]), rel=1e-4)
    assert found["target"] == "a + c"
    assert found["target_facts"] == {"kind": "classes", "classes": ["a", "c"]}
    assert (tmp_path / "o" / "x.classes-a-c.cam.npy").is_file()
    assert "a + c (p=" in capsys.readouterr().out


def test_a_contrast_subtracts_alpha_times_the_other_class(models, image_path, tmp_path):
    assert run(image_path, tmp_path, "toy-classes", "--contrast", "a:b", "--alpha", "0.5") == 0
    found = record(tmp_path, "x.contrast-a-b.json")
    logits = raw_output(models["toy-classes"], np.asarray(Image.open(image_path)))[0]
    assert found["score"] == pytest.approx(float(logits[0] - 0.5 * logits[1]), rel=1e-4)
    assert found["target"] == "a vs b"


def test_a_prompt_ensemble_scores_the_cosine_with_the_mean_text_embedding(
    models, image_path, tmp_path, capsys
):
    flags = ["--prompt", "dense nuclei", "--prompt", "tumour", "--template", "a slide of {}"]
    assert run(image_path, tmp_path, "toy-vl", *flags) == 0
    found = record(tmp_path, "x.prompt-dense-nuclei-tumour.json")
    embedding = raw_output(models["toy-vl"], np.asarray(Image.open(image_path)))[0]
    texts = F.normalize(toy_text(["a slide of dense nuclei", "a slide of tumour"]), dim=1)
    reference = F.normalize(texts.mean(dim=0), dim=0)
    assert found["score"] == pytest.approx(float(F.cosine_similarity(embedding, reference, 0)))
    assert found["probability"] is None and found["class_index"] is None
    assert found["target"] == "prompt 'dense nuclei; tumour'"
    assert "(similarity " in capsys.readouterr().out


def test_like_a_region_of_another_image_scores_the_similarity_to_its_embedding(
    models, image_path, tmp_path
):
    reference = np.random.default_rng(4).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(reference).save(tmp_path / "ref.png")
    flags = ["--like-region", "4,2,32,32", "--like-image", str(tmp_path / "ref.png")]
    assert run(image_path, tmp_path, "toy-vl", *flags) == 0
    found = record(tmp_path, "x.like-box-4-2-32-32.json")
    vl = models["toy-vl"]
    region = F.normalize(raw_output(vl, reference[2:34, 4:36])[0], dim=0)
    embedding = raw_output(vl, np.asarray(Image.open(image_path)))[0]
    assert found["score"] == pytest.approx(float(F.cosine_similarity(embedding, region, 0)))
    assert found["target"] == "like 'box 4,2,32,32'"


def dense_region_score(loaded, pixels: np.ndarray, mask: np.ndarray, channel: int) -> float:
    """Slow reference: each output cell weighs the share of its 4 x 4 pixels in the region."""
    dense = raw_output(loaded, pixels)[0, channel].numpy()
    share = mask.reshape(HEIGHT // 4, 4, WIDTH // 4, 4).mean(axis=(1, 3))
    return float((dense * share).sum())


def test_an_output_region_from_a_box_sums_the_class_inside_it(models, image_path, tmp_path):
    flags = ["--output-region", "nuclei", "--region", "10,6,21,14"]
    assert run(image_path, tmp_path, "toy-seg", *flags) == 0
    found = record(tmp_path, "x.region-nuclei-box-10-6-21-14.json")
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[6:20, 10:31] = True
    pixels = np.asarray(Image.open(image_path))
    expected = dense_region_score(models["toy-seg"], pixels, mask, 1)
    assert found["score"] == pytest.approx(expected, rel=1e-4)
    assert found["target"] == "nuclei in 'box 10,6,21,14'"
    assert found["target_facts"]["mask_pixels"] == 14 * 21


def test_an_output_region_from_an_annotation_file_or_a_labels_image(models, image_path, tmp_path):
    outline = Polygon(np.array([[5.5, 3.5], [5.5, 40.5], [30.5, 40.5], [30.5, 3.5]]))
    write_geojson(tmp_path / "cells.geojson", [Annotation((outline,), "Tumor")])
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    labels[6:31, 4:41] = 7
    labels[40:44, 50:60] = 3
    Image.fromarray(labels).save(tmp_path / "labels.png")
    geojson = ["--output-region", "nuclei", "--region", str(tmp_path / "cells.geojson")]
    assert run(image_path, tmp_path, "toy-seg", *geojson) == 0
    by_label = ["--output-region", "1", "--region-mask", str(tmp_path / "labels.png")]
    assert run(image_path, tmp_path, "toy-seg", *by_label, "--region-label", "7") == 0
    from_file = record(tmp_path, "x.region-nuclei-cells-geojson.json")
    from_labels = record(tmp_path, "x.region-1-labels-png-label-7.json")
    pixels = np.asarray(Image.open(image_path))
    expected = dense_region_score(models["toy-seg"], pixels, labels == 7, 1)
    assert from_file["score"] == pytest.approx(expected, rel=1e-4)
    assert from_labels["score"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("model", "flags", "message"),
    [
        ("toy-classes", ["--prompt", "tumour"], "--prompt needs a vision-language model"),
        ("toy-vl", ["--target", "a"], "returns an embedding, not classes: explain a text prompt"),
        ("toy-classes", ["--output-region", "a", "--region", "1,1,8,8"], "segmentation model"),
        ("toy-seg", ["--output-region", "nuclei", "--region", "100,100,8,8"], "covers no pixel"),
    ],
)
def test_a_target_the_model_cannot_answer_says_which_can(
    models, image_path, tmp_path, capsys, model, flags, message
):
    assert run(image_path, tmp_path, model, *flags) != 0
    assert message in capsys.readouterr().err


def test_the_trust_report_of_a_prompt_map_follows_its_similarity(
    models, image_path, tmp_path, capsys
):
    assert run(image_path, tmp_path, "toy-vl", "--prompt", "dense nuclei", "--trust") == 0
    trust = record(tmp_path, "x.prompt-dense-nuclei.json")["trust"]
    assert trust["faithfulness"]["measure"] == "score" and trust["probability"] is None
    assert trust["target_name"] == "prompt 'dense nuclei'"
    assert "trust: " in capsys.readouterr().out
