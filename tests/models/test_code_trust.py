"""Cards are data: code they name outside the plugin runs only when the user trusts it."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.cli import main
from napari_gradcam.models.code_trust import (
    UntrustedCodeError,
    factory_reference,
    import_reference,
    is_remembered,
    remember,
    trusted_code_path,
)
from napari_gradcam.models.loading import load_model
from napari_gradcam.models.probe import Recipe
from napari_gradcam.models.slide_model import SlideCard, load_slide_model
from tests.mil_cards import write_card

HELPER_SOURCE = """
from pathlib import Path

Path({marker!r}).open("a").write("imported\\n")


def build(in_dim=64, n_classes=2):
    from napari_gradcam.core.mil.aggregators import AttentionMIL

    return AttentionMIL(in_dim, n_classes)


def backbone():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


@pytest.fixture(autouse=True)
def state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh per-user state folder (where trusted cards are remembered)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("NAPARI_GRADCAM_STATE_DIR", str(folder))
    return folder


def write_helper(folder: Path, marker: Path, name: str = "helper.py") -> Path:
    """A Python file that appends to ``marker`` when imported, with an aggregator factory."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(HELPER_SOURCE.format(marker=str(marker))))
    return path


def write_recipe(path: Path, spec: str, **kwargs: object) -> Path:
    recipe = {
        "card": {"name": "probe", "classes": ["a", "b"], "input_size": [16, 16]},
        "backbone": {"spec": spec, "kwargs": kwargs},
        "head": {"layers": [4, 2]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe))
    return path


def aggregator(factory: str, **kwargs: object) -> dict[str, object]:
    return {"spec": factory, "kwargs": kwargs, "attention_module": "attention"}


def test_a_slide_card_naming_os_system_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    card = write_card(
        tmp_path / "card.json", aggregator=aggregator("os:system", command=f"touch {marker}")
    )
    with pytest.raises(UntrustedCodeError) as refused:
        load_slide_model(card, device="cpu")
    message = str(refused.value)
    assert "os:system" in message and "'aggregator.spec'" in message
    assert "--trust-code" in message and "trust_code=True" in message
    assert not marker.exists()


def test_a_recipe_naming_subprocess_run_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    recipe = write_recipe(tmp_path / "probe.json", "subprocess:run", args=["touch", str(marker)])
    with pytest.raises(UntrustedCodeError, match=r"subprocess:run \(field 'backbone.spec'\)"):
        load_model(str(recipe))
    assert not marker.exists()


def test_an_import_outside_the_model_libraries_is_refused_and_not_imported(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    write_helper(tmp_path / "site", marker, name="hostile_module_x.py")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    recipe = write_recipe(
        tmp_path / "probe.json", "timm:resnet18", act_layer={"import": "hostile_module_x.build"}
    )
    with pytest.raises(UntrustedCodeError, match=r"import hostile_module_x\.build"):
        load_model(str(recipe))
    assert not marker.exists() and "hostile_module_x" not in sys.modules


def test_imports_from_the_model_libraries_need_no_trust(tmp_path):
    recipe = write_recipe(
        tmp_path / "probe.json", "timm:vit_x", mlp_layer={"import": "timm.layers.SwiGLUPacked"}
    )
    assert Recipe.read(recipe).code_request().references == ()


def test_every_reference_is_checked_before_any_is_imported(tmp_path):
    """The encoder's file would run first, but the aggregator is untrusted too: nothing runs."""
    marker = tmp_path / "ran"
    write_helper(tmp_path / "cards", marker)
    encoder = {"spec": "helper.py:backbone"}
    card = write_card(
        tmp_path / "cards" / "card.json", encoder=encoder, aggregator=aggregator("os:system")
    )
    with pytest.raises(UntrustedCodeError) as refused:
        load_slide_model(card, device="cpu")
    described = [ref.field for ref in refused.value.request.references]
    assert described == ["aggregator.spec", "encoder.spec"]
    assert not marker.exists()


def test_a_code_file_in_a_card_is_read_from_the_cards_folder(tmp_path, monkeypatch):
    marker, decoy = tmp_path / "card-folder-ran", tmp_path / "cwd-ran"
    write_helper(tmp_path / "cards", marker)
    write_helper(tmp_path / "elsewhere", decoy)
    monkeypatch.chdir(tmp_path / "elsewhere")  # a helper.py here must not be the one run
    card = write_card(tmp_path / "cards" / "card.json", aggregator=aggregator("helper.py:build"))
    with pytest.raises(UntrustedCodeError, match="sha256"):
        load_slide_model(card, device="cpu")
    assert not marker.exists() and not decoy.exists()
    model = load_slide_model(card, device="cpu", trust_code=True)
    assert model.aggregator.__class__.__name__ == "AttentionMIL"
    assert marker.exists() and not decoy.exists()


def test_trust_is_remembered_per_file_content(tmp_path):
    marker = tmp_path / "ran"
    helper = write_helper(tmp_path, marker)
    recipe = write_recipe(tmp_path / "probe.json", "helper.py:backbone")
    request = Recipe.read(recipe).code_request()
    assert [ref.file for ref in request.references] == [helper.resolve()]
    remember(request)
    assert trusted_code_path().is_file()
    loaded = load_model(str(recipe))  # remembered: no flag needed
    assert loaded.kind == "recipe" and marker.exists()
    helper.write_text(helper.read_text() + "\n# changed\n")
    assert not is_remembered(Recipe.read(recipe).code_request())
    with pytest.raises(UntrustedCodeError):
        load_model(str(recipe))
    recipe.write_text(recipe.read_text().replace('"probe"', '"renamed"'))
    assert not is_remembered(Recipe.read(recipe).code_request())


def test_a_spec_the_user_gives_directly_runs_as_today(tmp_path):
    marker = tmp_path / "ran"
    helper = write_helper(tmp_path, marker)
    assert load_model(f"{helper}:backbone").kind == "factory"
    assert marker.exists()


@pytest.mark.parametrize(
    ("spec", "shipped"),
    [
        ("napari_gradcam.core.mil.aggregators:build_attention_mil", True),
        ("napari_gradcam.models.demo_encoder:build_demo_encoder", True),
        ("torch.nn:Identity", True),
        ("torchvision.models:resnet18", True),
        ("napari_gradcam.models.loading:load_model", False),  # could unpickle with kwargs
        ("napari_gradcam.core.output_files:atomic_write", False),
        ("torchvision.models.resnet:load_state_dict_from_url", False),
        ("torch:load", False),
        ("torch.nn:_private", False),
        ("builtins:eval", False),
    ],
)
def test_which_factories_ship_with_the_plugin(tmp_path, spec, shipped):
    assert (factory_reference("f", spec, tmp_path) is None) == shipped


@pytest.mark.parametrize(
    ("name", "shipped"),
    [
        ("timm.layers.SwiGLUPacked", True),
        ("torch.nn.SiLU", True),
        ("torchvision.ops.MLP", True),
        ("torch.load", False),
        ("os.system", False),
        ("torch.nn._private", False),
        ("timm.models.load_checkpoint", False),
    ],
)
def test_which_imports_ship_with_the_model_libraries(name, shipped):
    assert (import_reference("f", name) is None) == shipped


def test_shipped_cards_need_no_trust():
    from napari_gradcam.models.bundled import DEMO_DIR

    assert SlideCard.read(DEMO_DIR / "mil_demo.json").code_request().references == ()


def test_timm_arguments_that_read_weights_are_refused(tmp_path):
    recipe = write_recipe(tmp_path / "probe.json", "timm:resnet18", checkpoint_path="evil.pth")
    with pytest.raises(ValueError, match=r"\['checkpoint_path'\].*weights file"):
        load_model(str(recipe))


def test_the_command_line_refuses_a_hostile_slide_card_before_opening_the_slide(tmp_path, capsys):
    marker = tmp_path / "ran"
    card = write_card(
        tmp_path / "card.json", aggregator=aggregator("os:system", command=f"touch {marker}")
    )
    status = main(["slide", str(tmp_path / "any.svs"), "--mil", str(card), "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 2 and not marker.exists()
    assert "os:system" in error and "--trust-code" in error


def test_the_command_line_refuses_a_hostile_recipe_and_runs_it_with_trust_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    write_helper(tmp_path / "model", marker)
    recipe = write_recipe(tmp_path / "model" / "probe.json", "helper.py:backbone")
    image = tmp_path / "tile.npy"
    np.save(image, np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    args = ["explain", str(image), "--model", str(recipe), "--out", str(tmp_path / "out")]
    assert main(args) == 2 and not marker.exists()
    assert "helper.py:backbone" in capsys.readouterr().err
    assert main([*args, "--trust-code"]) == 0 and marker.exists()
    assert not trusted_code_path().exists()  # the flag is for this run only


def test_torchvision_arguments_that_download_weights_are_refused(tmp_path):
    recipe = write_recipe(tmp_path / "probe.json", "torchvision.models:resnet18", weights="DEFAULT")
    with pytest.raises(ValueError, match=r"\['weights'\] would download weights"):
        load_model(str(recipe))


def test_the_slide_command_runs_a_trusted_recipe_on_every_tile(tmp_path, capsys):
    from napari_gradcam.data import HE_SLIDE_PATH

    marker = tmp_path / "ran"
    write_helper(tmp_path / "model", marker)
    recipe = write_recipe(tmp_path / "model" / "probe.json", "helper.py:backbone")
    args = ["slide", str(HE_SLIDE_PATH), "--model", str(recipe), "--mpp", "8", "--out"]
    assert main([*args, str(tmp_path / "refused")]) == 2 and not marker.exists()
    assert "--trust-code" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "out"), "--trust-code"]) == 0
    summary = json.loads((tmp_path / "out" / "CMU-1-Small-Region.json").read_text())
    assert summary["tiles"]["explained"] > 0


def test_a_code_file_changed_after_the_check_is_not_run(tmp_path, monkeypatch):
    """The bytes that run are the bytes that were checked (no swap between check and import)."""
    from napari_gradcam.models import code_trust

    marker = tmp_path / "ran"
    helper = write_helper(tmp_path, marker)
    recipe = write_recipe(tmp_path / "probe.json", "helper.py:backbone")
    checked = code_trust.checked_files

    def swap_after_check(request):
        helper.write_text(f"open({str(marker)!r}, 'w').write('swapped')\n")
        return checked(request)

    monkeypatch.setattr("napari_gradcam.models.probe.checked_files", swap_after_check)
    with pytest.raises(ValueError, match="changed while its card was being loaded"):
        load_model(str(recipe), trust_code=True)
    assert not marker.exists()


def test_an_unreadable_trust_list_trusts_nothing_and_is_never_replaced(tmp_path):
    recipe = write_recipe(tmp_path / "probe.json", "os:system")
    request = Recipe.read(recipe).code_request()
    trusted_code_path().parent.mkdir(parents=True)
    trusted_code_path().write_text("{not json")
    assert not is_remembered(request)
    with pytest.raises(OSError, match=r"cannot be read.*move it away"):
        remember(request)
    assert trusted_code_path().read_text() == "{not json"
