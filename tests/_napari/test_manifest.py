import subprocess
import sys
from pathlib import Path

from npe2 import PluginManifest

ROOT = Path(__file__).parents[2]


def test_manifest_validates_and_is_packaged():
    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    manifest.validate_imports()
    packaged = ROOT / "napari_gradcam" / "napari.yaml"
    assert packaged.resolve() == (ROOT / "napari.yaml").resolve()
    assert manifest.name == "napari-gradcam"
    assert {"Grad-CAM", "Grad-CAM annotations", "Slide-level model (MIL)"} <= {
        w.display_name for w in manifest.contributions.widgets
    }
    assert {s.key for s in manifest.contributions.sample_data} == {"he", "ihc"}


def test_plugin_modules_do_not_import_torch():
    code = (
        "import sys; import napari_gradcam._napari.explain.widget, napari_gradcam._napari.demo, "
        "napari_gradcam._napari.sample_data, napari_gradcam._napari.annotations.widget, "
        "napari_gradcam._napari.annotations.geojson_io, napari_gradcam._napari.mil.widget; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
