"""The target flags of ``explain`` and ``slide``: one kind at a time, each read into a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_gradcam.cli import build_parser
from napari_gradcam.commands.target_args import target_request
from napari_gradcam.core.targets import Classes, Contrast, OutputRegion, Prompt


def request(*flags: str, command: str = "explain"):
    where = ["x.png", "--out", "o"] if command == "explain" else ["s.svs", "--out", "o"]
    return target_request(build_parser().parse_args([command, *where, *flags]))


@pytest.mark.parametrize("command", ["explain", "slide"])
def test_each_kind_reads_into_its_target(command):
    assert request(command=command).target is None
    assert request("--target", "tumour", command=command).target == "tumour"
    assert request("--target", "2", command=command).target == 2
    classes = request("--classes", "tumour, necrosis,3", command=command)
    assert classes.target == Classes(("tumour", "necrosis", 3))
    assert classes.slug == "classes-tumour-necrosis-3"
    assert request("--contrast", "tumour", command=command).target == Contrast("tumour")
    contrast = request("--contrast", "tumour:stroma", "--alpha", "0.5", command=command)
    assert contrast.target == Contrast("tumour", "stroma", 0.5)
    prompts = request(
        "--prompt", "dense nuclei", "--prompt", "tumour cells", "--template", "an image of {}"
    )
    assert prompts.target == Prompt(("dense nuclei", "tumour cells"), "an image of {}")
    assert prompts.slug == "prompt-dense-nuclei-tumour-cells"


def test_the_region_kinds_wait_for_their_image():
    like = request("--like-region", "10,20,64,64", "--like-image", "ref.png")
    assert like.target is None and like.like == "10,20,64,64"
    assert like.like_image == Path("ref.png") and like.slug == "like-box-10-20-64-64"
    region = request("--output-region", "nuclei", "--region", "regions/tumour.geojson")
    assert isinstance(region.target, OutputRegion) and region.target.mask is None
    assert region.target.target_class == "nuclei" and region.target.label == "tumour.geojson"
    assert region.region == "regions/tumour.geojson"
    labels = request(
        "--output-region", "1", "--region-mask", "cells.tif", "--region-label", "7", command="slide"
    )
    assert labels.target.target_class == 1 and labels.target.label == "cells.tif label 7"
    assert labels.region_mask == Path("cells.tif") and labels.region_label == 7


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--alpha", "0.5"], "--alpha goes with --contrast"),
        (["--target", "a", "--template", "{}"], "--template goes with --prompt"),
        (["--region", "1,1,4,4"], "--region goes with --output-region"),
        (["--prompt", "x", "--region-mask", "m.png"], "--region-mask goes with --output-region"),
        (["--like-image", "r.png"], "--like-image goes with --like-region"),
        (["--output-region", "nuclei"], "needs the region: --region x,y,w,h"),
        (["--classes", "tumour"], "two classes or more.*--target tumour"),
        (["--contrast", ":stroma"], "--contrast needs a class"),
        (["--prompt", " "], "--prompt needs some text"),
    ],
)
def test_a_flag_out_of_place_says_what_to_do(flags, message):
    with pytest.raises(ValueError, match=message):
        request(*flags)


def test_two_kinds_at_once_are_refused(capsys):
    with pytest.raises(SystemExit):
        request("--target", "a", "--prompt", "dense nuclei")
    assert "--prompt: not allowed with argument --target" in capsys.readouterr().err


def test_a_slide_level_model_takes_a_class_only(capsys):
    from napari_gradcam.cli import main

    assert main(["slide", "s.svs", "--out", "o", "--mil", "c.json", "--prompt", "x"]) == 2
    assert "--mil explains a class of the slide-level model" in capsys.readouterr().err


def test_a_like_region_smaller_than_the_model_input_grows_about_its_centre():
    from napari_gradcam.commands.target_args import region_pixels
    from napari_gradcam.core.tiling.grid import LevelView

    image = np.arange(40 * 50 * 3, dtype=np.uint16).reshape(40, 50, 3)
    asked = request("--like-region", "20,10,8,8")
    grown = region_pixels(asked, LevelView(image), (32, 32), 10_000)
    np.testing.assert_array_equal(grown, image[0:32, 8:40])
    np.testing.assert_array_equal(
        region_pixels(asked, LevelView(image), None, 10_000), image[10:18, 20:28]
    )
    coarse = LevelView(image[1::2, 1::2], (2.0, 2.0))  # level 1: the same region at half scale
    np.testing.assert_array_equal(
        region_pixels(asked, coarse, None, 10_000), image[11:18:2, 21:28:2]
    )
