"""The trust panel on transformer maps: feature stacks, sanity cascades, deletion/insertion.

On the bundled ViT demo (class token, 8 px patches, a 12 x 12 grid on 96 px tiles) and on
tiny token (class + register tokens) and channels-last (Swin-like) models built here.
"""

from functools import partial

import numpy as np
import pytest
import torch

import napari_gradcam as ng
from napari_gradcam.core.explain.preprocess import to_batch
from napari_gradcam.core.settings import ExplainSettings
from napari_gradcam.core.tiling.tissue import tissue_mask
from napari_gradcam.core.trust.faithfulness import deletion_insertion
from napari_gradcam.core.trust.features import feature_stack, layer_sweep, sweep_layers
from napari_gradcam.core.trust.report import trust_report
from napari_gradcam.core.trust.sanity import parameter_layers, sanity_check
from tests.core.he_tiles import he_tile
from tests.models.localisation import he_tile as evidence_tile
from tests.models.localisation import held_out_tissue
from tests.transformers import TinySwin, TinyViT


@pytest.fixture(scope="module")
def vit():
    return ng.load_model("demo-vit", device="cpu")


@pytest.fixture(scope="module")
def dense_batch(vit) -> torch.Tensor:
    return to_batch(he_tile("dense"), vit.card, torch.device("cpu"))


def reference_stack(model, batch, layer, to_grid, target):
    """Patch-grid activations (C, h, w) and Grad-CAM weight x mean, by plain autograd."""
    kept = {}
    hook = model.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: kept.setdefault("out", out.retain_grad() or out)
    )
    try:
        logits = model(batch.clone().requires_grad_(True))
    finally:
        hook.remove()
    logits[0, target].backward()
    activations = to_grid(kept["out"].detach())[0]
    gradients = to_grid(kept["out"].grad)[0]
    return activations.numpy(), (gradients.sum((1, 2)) * activations.mean((1, 2))).numpy()


def tokens_to_grid(prefix: int, grid: tuple[int, int]):
    return lambda t: t[:, prefix:].transpose(1, 2).reshape(len(t), -1, *grid)


def check_stack(stack, activations, contributions) -> None:
    np.testing.assert_array_equal(stack.channels, np.argsort(-contributions, kind="stable"))
    np.testing.assert_allclose(stack.activations, activations[stack.channels], atol=1e-6)
    np.testing.assert_allclose(
        stack.contributions, contributions[stack.channels], rtol=1e-4, atol=1e-7
    )


def test_vit_feature_stack_is_per_channel_patch_grid_without_the_class_token(
    vit, dense_batch
) -> None:
    stack = feature_stack(vit, he_tile("dense"), target="nuclei-dense", origin=(8, 8))
    assert stack.layer == f"{last_block(vit)}.norm1" and stack.activations.shape == (96, 12, 12)
    assert stack.layout == "tokens 12x12" and stack.prefix_tokens == 1
    assert stack.stride == (8.0, 8.0) and stack.origin == (8.0, 8.0)
    activations, contributions = reference_stack(
        vit.module, dense_batch, f"{last_block(vit)}.norm1", tokens_to_grid(1, (12, 12)), 2
    )
    check_stack(stack, activations, contributions)


def test_token_layer_with_registers_drops_every_prefix_token() -> None:
    torch.manual_seed(0)
    model = TinyViT(reg_tokens=4, img_size=48).eval()
    batch = torch.randn(1, 3, 48, 48)
    stack = feature_stack(model, batch, layer="blocks.1.norm1", target=1)
    assert stack.activations.shape == (16, 6, 6) and stack.prefix_tokens == 5
    assert stack.stride == (8.0, 8.0) and stack.layout == "tokens 6x6"
    reference = reference_stack(model, batch, "blocks.1.norm1", tokens_to_grid(5, (6, 6)), 1)
    check_stack(stack, *reference)


def test_channels_last_layer_is_read_as_nhwc() -> None:
    torch.manual_seed(0)
    model = TinySwin().eval()
    batch = torch.randn(1, 3, 32, 32)
    stack = feature_stack(model, batch, layer="layers.1", target=0)
    assert stack.activations.shape == (16, 4, 4) and stack.layout == "NHWC 4x4"
    assert stack.stride == (8.0, 8.0) and stack.prefix_tokens == 0
    reference = reference_stack(model, batch, "layers.1", lambda t: t.permute(0, 3, 1, 2), 0)
    check_stack(stack, *reference)


def test_undeterminable_or_unreached_token_layers_are_refused(vit) -> None:
    model = TinyViT().eval()
    del model.patch_embed.patch_size  # no declared patch size: the token grid is unknown
    with pytest.raises(ValueError, match="declares no patch size"):
        feature_stack(model, torch.randn(1, 3, 32, 32), layer="blocks.1.norm1")
    last = last_block(vit)
    with pytest.raises(ValueError, match=f"no gradient from the patch tokens of layer '{last}'"):
        feature_stack(vit, he_tile("dense"), layer=last)


def last_block(vit) -> str:
    """The name of the ViT demo's last block (its depth is the demo's choice)."""
    return f"blocks.{len(vit.module.blocks) - 1}"


def test_vit_sweep_walks_the_blocks_at_one_patch_grid(vit) -> None:
    layers = sweep_layers(vit)
    assert layers == [f"blocks.{i}.norm1" for i in range(len(vit.module.blocks))]
    assert sweep_layers(vit, count=2) == ["blocks.0.norm1", f"{last_block(vit)}.norm1"]
    maps = list(layer_sweep(vit, he_tile("dense"), layers))
    assert all(m.cam.shape == (12, 12) and m.stride == (8.0, 8.0) for m in maps)
    assert len({int(m.targets[0]) for m in maps}) == 1
    assert np.ptp(maps[-1].cam) > 0


def test_swin_sweep_takes_stages_of_several_grids() -> None:
    layers = sweep_layers(TinySwin().eval(), input_shape=(1, 3, 32, 32), count=3)
    grids = [
        ng.explain(TinySwin().eval(), torch.randn(1, 3, 32, 32), layer=n).cam.shape[-2:]
        for n in layers
    ]
    assert len(layers) == 3 and grids[0] != grids[-1]


def test_vit_cascade_takes_whole_blocks_from_the_top(vit, dense_batch) -> None:
    units = parameter_layers(vit.module, dense_batch)[::-1]
    blocks = [f"blocks.{i}" for i in reversed(range(len(vit.module.blocks)))]
    assert units == ["head", "norm", *blocks, "patch_embed.proj", ""]
    swin = parameter_layers(TinySwin().eval(), torch.randn(1, 3, 32, 32))[::-1]
    assert swin == ["head", "norm", "layers.2", "layers.1", "layers.0", "patch_embed.proj"]


@pytest.mark.parametrize(
    ("method", "steps"),
    [("gradcam", 4), ("transformer-attribution", 4), ("rollout", 6), ("attention", 6)],
)
def test_vit_sanity_cascade_decorrelates_the_map(vit, dense_batch, method, steps) -> None:
    before = {k: v.clone() for k, v in vit.module.state_dict().items()}
    original = ng.explain(vit, dense_batch, method=method, target="nuclei-dense")
    check = sanity_check(vit, dense_batch, original, steps=steps, repeats=2)
    assert [s.randomised[-1] for s in check.steps][:3] == ["head", "norm", last_block(vit)]
    assert len(check.steps) == steps and check.steps[-1].spearman < 0.5
    assert check.depends_on_weights and check.verdict.startswith("passes")
    for key, value in vit.module.state_dict().items():
        torch.testing.assert_close(value, before[key])  # the cascade ran on a copy


def test_class_agnostic_attention_ignores_the_head(vit, dense_batch) -> None:
    options = ng.RolloutOptions(discard_ratio=0.5)
    original = ng.explain(vit, dense_batch, method="rollout", options=options)
    settings = ExplainSettings("rollout", options=options)
    check = sanity_check(vit, dense_batch, original, settings, steps=6, repeats=1)
    assert check.steps[0].spearman == pytest.approx(1.0)  # head: rollout never reads it
    assert check.verdict.startswith("passes, partly") and "ignores head, norm" in check.verdict


@pytest.mark.parametrize("make", [partial(TinyViT, reg_tokens=4, img_size=48), TinySwin])
def test_toy_token_and_channels_last_cascades_run(make) -> None:
    torch.manual_seed(1)
    model = make().eval()
    batch = torch.randn(1, 3, 48, 48) if isinstance(model, TinyViT) else torch.randn(1, 3, 32, 32)
    layer = "blocks.1.norm1" if isinstance(model, TinyViT) else "layers.1"
    original = ng.explain(model, batch, layer=layer)
    check = sanity_check(model, batch, original, steps=4, repeats=1)
    units = [step.randomised[-1] for step in check.steps]
    blocks = ["blocks.1", "blocks.0"] if isinstance(model, TinyViT) else ["layers.2", "layers.1"]
    assert units == ["head", "norm", *blocks]
    assert all(s.spearman is not None for s in check.steps)
    assert check.steps[-1].spearman < 0.9  # random toys: measured 0.54 (ViT), 0.61 (Swin)


@pytest.mark.slow  # deletion curves on every held-out CC0 tile (about 6 s)
def test_gradcam_order_beats_a_random_order_on_held_out_vit_tiles(vit, he_evidence) -> None:
    index, labels = held_out_tissue(vit.card, he_evidence)
    ours, chance = [], []
    for i in index[labels == 2][::10]:
        tile = evidence_tile(he_evidence, i)
        batch = to_batch(tile, vit.card, torch.device("cpu"))
        cam = ng.explain(vit, batch, target="nuclei-dense").cam[0]
        options = dict(target=2, baseline="tissue-mean", tissue=tissue_mask(tile))
        ours.append(deletion_insertion(vit, batch, cam, **options))
        noise = np.random.default_rng(int(i)).random(cam.shape)
        chance.append(deletion_insertion(vit, batch, noise, **options))
    deletion = [np.mean([c.deletion_auc for c in curves]) for curves in (ours, chance)]
    insertion = [np.mean([c.insertion_auc for c in curves]) for curves in (ours, chance)]
    assert len(ours) >= 15
    assert deletion[0] < deletion[1] - 0.05, deletion  # measured 0.68 vs 0.75
    assert insertion[0] > insertion[1] + 0.02, insertion  # measured 0.80 vs 0.75


@pytest.mark.parametrize("method", ["rollout", "attention", "transformer-attribution"])
def test_curves_of_attention_maps_run_from_the_image_to_the_baseline(vit, method) -> None:
    tile = he_tile("dense")
    report = trust_report(
        vit,
        tile,
        settings=ExplainSettings(method),
        sanity_steps=2,
        curve_steps=8,
        baseline="tissue-mean",
    )
    curves = report.faithfulness
    whole = float(ng.explain(vit, tile, method=method).probabilities[0])
    last = last_block(vit)
    assert report.layer in {f"blocks.0.attn .. {last}.attn", f"{last}.attn"}
    assert curves.deletion[0] == pytest.approx(whole, abs=1e-5)
    assert curves.insertion[-1] == pytest.approx(whole, abs=1e-5)
    assert curves.deletion[-1] == pytest.approx(curves.insertion[0], abs=1e-5)
    assert np.all((curves.deletion >= 0) & (curves.deletion <= 1))
    assert len(report.sanity.steps) == 2 and report.rating in {"plausible", "mixed", "doubtful"}
