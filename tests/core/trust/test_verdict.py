"""The trust report in plain words: one verdict and one next step per way a map can fail."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

import napari_gradcam as ng
from napari_gradcam.core.trust.report import TrustReport, trust_report
from tests.core.he_tiles import demo_model, he_tile

NUMBER = re.compile(r"\d\.\d")


@pytest.fixture(scope="module")
def passing() -> TrustReport:
    """A report on nuclei-dense tissue where every check passes (3 sanity layers)."""
    demo, tile = demo_model(), he_tile("dense_saturated")
    explanation = ng.explain(demo, tile, target="nuclei-dense")
    report = trust_report(demo, tile, explanation, sanity_steps=3, curve_steps=6)
    assert report.rating == "plausible", report.findings
    return report


def with_sanity(report: TrustReport, depends: bool | None) -> TrustReport:
    return replace(report, sanity=replace(report.sanity, depends_on_weights=depends))


def test_a_plausible_map_is_said_to_follow_the_model_without_numbers(passing) -> None:
    assert passing.verdict.startswith("This map follows the model: it changes when")
    assert "hiding its hot areas lowers" in passing.verdict
    assert not NUMBER.search(passing.verdict)
    assert passing.next_step.startswith("Read the hot areas as where the model found evidence")


def test_a_map_that_ignores_the_weights_says_to_use_a_deeper_layer(passing) -> None:
    report = with_sanity(passing, False)
    assert report.rating == "doubtful"
    assert report.verdict.startswith("This map does not show the model's reasoning")
    assert "barely changes when the model's learned weights are scrambled" in report.verdict
    assert "it shows edges and stain, not the model's reasoning" in report.next_step
    assert "Grad-CAM at the last convolutional layer" in report.next_step


def test_a_map_no_better_than_chance_says_to_compare_methods(passing) -> None:
    ours, chance = passing.faithfulness, passing.random_order
    worse = replace(ours, deletion_auc=chance.deletion_auc + 1)
    report = replace(passing, faithfulness=worse)
    assert report.faithful is False and report.rating == "doubtful"
    assert "no faster than hiding random areas" in report.verdict
    assert "compare methods side by side" in report.next_step


def test_an_absent_class_says_to_explain_the_predicted_one() -> None:
    demo, tile = demo_model(), he_tile("stroma")
    explanation = ng.explain(demo, tile, target="nuclei-dense")
    report = trust_report(demo, tile, explanation, sanity_steps=3, curve_steps=6)
    assert report.faithful is None
    assert "cannot say whether they matter" in report.verdict
    assert report.next_step.startswith("The model does not call this tile nuclei-dense")


def test_a_blank_tile_says_to_pan_to_tissue() -> None:
    report = trust_report(demo_model(), he_tile("glass"), sanity_steps=1, curve_steps=4)
    assert report.verdict.startswith("This tile holds almost no tissue")
    assert report.next_step == "Pan to a tile with tissue and run the report again."


def test_a_sanity_check_that_could_not_run_names_its_reason(passing) -> None:
    report = with_sanity(passing, None)
    report = replace(report, sanity=replace(report.sanity, verdict="not checked: TorchScript"))
    assert report.rating == "mixed"
    assert "could not run" in report.verdict
    assert report.next_step == "The scramble test could not run (TorchScript)."


def test_a_passing_but_even_map_names_its_shape(passing) -> None:
    warning = "the map is spread almost evenly: it singles out no region"
    report = replace(passing, noise=replace(passing.noise, warnings=(warning,)))
    assert report.rating == "mixed"
    assert report.verdict.startswith("This map follows the model (") and warning in report.verdict
    assert report.next_step.startswith("The map is spread evenly over the tile")
