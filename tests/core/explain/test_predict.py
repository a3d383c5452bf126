"""One predict path: region probabilities and per-tile facts agree with explain()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_gradcam.core.explain.pipeline import explain
from napari_gradcam.core.explain.predict import predict, prediction_facts
from napari_gradcam.core.explain.targets import class_probabilities
from tests.architectures import build


@pytest.mark.parametrize(("name", "target"), [("resnet", None), ("resnet", 2), ("single_logit", 0)])
def test_predict_gives_the_probability_explain_reports(name, target, rgb_image, small_card):
    model = build(name)
    found = predict(model, rgb_image, target=target, card=small_card)
    explained = explain(model, rgb_image, target=target, card=small_card)
    np.testing.assert_array_equal(found.targets, explained.targets)
    np.testing.assert_allclose(found.target_probability, explained.probabilities, rtol=1e-5)
    np.testing.assert_allclose(found.logits, explained.logits, rtol=1e-5, atol=1e-6)


def test_prediction_facts_are_the_top_two_probabilities():
    logits = np.array([[1.0, 3.0, 2.0], [0.5, -1.0, 0.0]], np.float32)
    expected = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    facts = prediction_facts(logits)
    np.testing.assert_array_equal(facts["class_index"], [1, 0])
    np.testing.assert_allclose(facts["probability"], expected.max(axis=1), rtol=1e-6)
    ordered = np.sort(expected, axis=1)
    np.testing.assert_allclose(facts["margin"], ordered[:, -1] - ordered[:, -2], rtol=1e-5)


def test_a_single_logit_is_two_classes():
    probabilities = class_probabilities(torch.tensor([[0.0], [np.log(3.0)]]))
    np.testing.assert_allclose(probabilities.numpy(), [[0.5, 0.5], [0.25, 0.75]], rtol=1e-6)
    facts = prediction_facts(np.array([[-np.log(3.0)]], np.float32))
    assert facts["class_index"][0] == 0
    assert facts["margin"][0] == pytest.approx(0.5)


def test_predict_runs_in_eval_mode_and_leaves_the_model_as_it_was(rgb_image, small_card):
    model = build("resnet").train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    found = predict(model, rgb_image, card=small_card)
    assert model.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    model.eval()
    explained = explain(model, rgb_image, card=small_card)
    np.testing.assert_allclose(found.logits, explained.logits, rtol=1e-5, atol=1e-6)


def test_predict_waits_for_the_models_lock(rgb_image, small_card):
    import threading

    from napari_gradcam.core.explain.hooks import model_lock

    model, done = build("resnet").eval(), threading.Event()
    worker = threading.Thread(
        target=lambda: (predict(model, rgb_image, card=small_card), done.set())
    )
    with model_lock(model):  # another call is running the model
        worker.start()
        assert not done.wait(0.5)
    worker.join(30)
    assert done.is_set() and not model.training
