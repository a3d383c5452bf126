import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.cli import main
from napari_gradcam.core.explain.inputs import model_batch
from napari_gradcam.core.progress import run_to_end
from napari_gradcam.core.trust.faithfulness import deletion_insertion
from napari_gradcam.core.trust.report import STAGES, iter_trust_report, trust_report
from tests.core.he_tiles import demo_model, he_tile

FAST = {"sanity_steps": 2, "curve_steps": 6}


def test_a_blank_tile_is_flagged_first_and_not_rated_as_evidence() -> None:
    report = trust_report(demo_model(), he_tile("glass"), **FAST)
    assert report.noise.blank and report.rating == "blank tile"
    assert report.findings[0].startswith("blank tile")
    assert report.headline.startswith("blank tile: background")


def test_report_bundles_the_checks_into_json(tmp_path: Path) -> None:
    demo, tile = demo_model(), he_tile("dense_edge")
    explanation = ng.explain(demo, tile)
    steps = []
    report = run_to_end(iter_trust_report(demo, tile, explanation, **FAST), steps.append)
    assert [step.step for step in steps] == list(range(1, STAGES + 1))
    assert report.method == "gradcam" and report.layer == "features.14"
    assert report.faithful and len(report.sanity.steps) == 2
    assert report.findings[0].startswith("sanity check")
    assert len(report.faithfulness.deletion) == 7 == len(report.random_order.insertion)
    record = json.loads(json.dumps(report.to_dict()))
    assert record["noise"]["blank"] is False and record["rating"] == report.rating
    assert record["sanity"]["steps"][0]["randomised"] == ["classifier"]
    assert "deletion AUC" in record["headline"]
    assert record["verdict"] == report.verdict and record["next_step"] == report.next_step


def test_an_explanation_of_other_pixels_is_refused() -> None:
    demo = demo_model()
    explanation = ng.explain(demo, he_tile("dense"))
    with pytest.raises(ValueError, match="give the pixels that were explained"):
        trust_report(demo, he_tile("dense", size=128), explanation=explanation)


def test_a_torchscript_model_gets_every_check_but_the_sanity_check() -> None:
    demo, tile = demo_model(), he_tile("dense_edge")
    scripted = torch.jit.script(demo.module.eval())
    explanation = ng.explain(scripted, tile, method="occlusion", card=demo.card)
    report = trust_report(scripted, tile, explanation, card=demo.card, curve_steps=4)
    assert report.sanity.depends_on_weights is None and report.sanity.steps == ()
    assert "TorchScript" in report.sanity.verdict and report.rating != "plausible"
    assert report.faithful, "deletion and insertion need only forward passes"


def test_cli_adds_the_report_and_prints_a_verdict(tmp_path: Path, capsys) -> None:
    iio.imwrite(tmp_path / "glass.png", he_tile("glass"))
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "glass.png"), "--out", str(out), "--trust"]) == 0
    record = json.loads((out / "glass.json").read_text())
    assert record["trust"]["noise"]["blank"] is True
    assert record["trust"]["rating"] == "blank tile"
    assert "glass.png: trust: blank tile" in capsys.readouterr().out
    assert np.load(out / "glass.cam.npy").shape == (12, 12)


def test_curves_that_hardly_move_are_not_judged() -> None:
    demo, tile = demo_model(), he_tile("dense_edge")
    explanation = ng.explain(demo, tile, target="stroma")  # p(stroma) stays near 0
    report = trust_report(demo, tile, explanation, **FAST)
    low, high = report.curve_range
    assert high - low < 0.05 and report.faithful is None
    assert report.rating != "plausible"
    assert any(f.startswith("faithfulness cannot be judged: p(stroma)") for f in report.findings)


def test_a_saturated_probability_is_judged_on_the_logit() -> None:
    demo, tile = demo_model(), he_tile("dense_saturated")
    explanation = ng.explain(demo, tile, target="nuclei-dense")
    batch = model_batch(demo.module, tile, demo.card)
    target = int(explanation.targets[0])
    on_probability = deletion_insertion(demo, batch, explanation.cam[0], target, steps=6)
    assert np.ptp(np.r_[on_probability.deletion, on_probability.insertion]) < 0.05  # flat
    report = trust_report(demo, tile, explanation, **FAST)
    assert report.probability > 0.95 and report.faithfulness.measure == "logit"
    assert report.random_order.measure == "logit"
    low, high = report.curve_range
    assert high - low > 1.0 and report.faithful is True
    assert "on the logit" in report.findings[1] and "saturated" in report.findings[1]


def test_a_class_the_model_does_not_call_keeps_the_probability() -> None:
    demo, tile = demo_model(), he_tile("stroma")
    report = trust_report(demo, tile, ng.explain(demo, tile, target="nuclei-dense"), **FAST)
    assert report.probability < 0.5 and report.faithfulness.measure == "probability"


def test_an_unknown_curve_measure_is_refused() -> None:
    demo, tile = demo_model(), he_tile("dense")
    batch = model_batch(demo.module, tile, demo.card)
    with pytest.raises(ValueError, match="use one of probability, logit, score"):
        deletion_insertion(demo, batch, np.ones((12, 12)), 2, measure="odds")
