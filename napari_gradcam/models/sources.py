"""What a model is built from: its files and the code that builds it.

Two caches ask this. The in-process model cache (``models.cache``) reloads a model when one of
its files changed on disk; the on-disk embedding cache (``slides.embedding_cache``) keys the
embeddings by the *content* of everything that computes them. Both read the same list here,
so that a file the loader reads is never missing from a cache's check.

A spec (see ``models.loading``) is built from:

* ``demo``, ``demo-vit``: the bundled factory's code, weights and card;
* ``file.py:factory``: that file (given directly: read relative to the working folder; named
  in a card or recipe: read from that card's folder, as the loader does);
* ``package.module:factory``, ``timm:NAME``, ``smp:NAME`` and ``open_clip:ARCH``: the installed
  package's code;
* ``hf:FOLDER``: transformers' code and the folder's config files;
* ``recipe.json``: the recipe, its backbone's sources, the backbone and head weights and a
  card file it names;
* ``model.pt`` (TorchScript): the file;

plus the weights, and the card where the loader looks for it (``specs.card_location``). A
slide-model card adds its encoder's sources, its encoder card and its aggregator's code and
weights. A recipe or slide-model card that cannot be read counts as its own file alone (loading
it says why). No napari.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from napari_gradcam.models.bundled import BUNDLED, DEMO_DIR
from napari_gradcam.models.code_trust import function_spec_in_folder
from napari_gradcam.models.hugging_face_clip import PREPROCESSOR_FILE, config_file
from napari_gradcam.models.probe import Recipe
from napari_gradcam.models.slide_model import SlideCard, encoder_spec_in_folder
from napari_gradcam.models.smp_models import SMP_PACKAGE, is_smp_spec
from napari_gradcam.models.specs import (
    card_location,
    is_factory_spec,
    is_hugging_face_spec,
    is_open_clip_spec,
)
from napari_gradcam.models.timm_models import TIMM_PREFIX, is_timm_spec

Stamps = tuple[tuple[str, int, int], ...]
"""``(path, size, modification time in ns)`` per file; ``(path, -1, -1)`` for a missing one."""


@dataclass(frozen=True)
class ModelSources:
    """The files and installed packages a model is built from.

    Attributes
    ----------
    files : tuple of Path
        Every file the loader reads (code, weights, cards, recipes), existing or not.
    packages : tuple of str
        Top-level installed packages whose code builds the model (``timm``, a factory's
        package).
    """

    files: tuple[Path, ...] = ()
    packages: tuple[str, ...] = ()

    def __add__(self, other: ModelSources) -> ModelSources:
        return ModelSources(
            _unique(self.files + other.files), _unique(self.packages + other.packages)
        )

    def stamps(self) -> Stamps:
        """Size and modification time of each file: cheap, for an in-process cache."""
        stamps = []
        for path in self.files:
            try:
                info = path.stat()
            except OSError:
                stamps.append((str(path), -1, -1))
                continue
            stamps.append((str(path), info.st_size, info.st_mtime_ns))
        return tuple(stamps)

    def content_digest(self) -> str:
        """SHA-256 of every file's bytes and every package's code and version.

        The files' contents are hashed in their order here, not their paths: a moved project
        keeps its digest. A package's code is all ``.py`` files of its installed folder (so an
        edited editable install counts) and its distribution's version. The files hashed are
        those on disk now: code edited after this process imported it is not what ran.
        """
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{path.suffix}:{file_digest(path)};".encode())
        for package in self.packages:
            digest.update(package.encode() + b"\0")
            digest.update(package_digest(package).encode())
        return digest.hexdigest()


def model_sources(
    spec: str, weights: str | Path | None = None, card: str | Path | None = None
) -> ModelSources:
    """The sources of a classifier or encoder spec (see the module docstring)."""
    if spec in BUNDLED:
        factory, stem = BUNDLED[spec]
        own_weights = DEMO_DIR / f"{stem}.pt" if weights is None else weights
        return model_sources(factory, own_weights, card_location(spec, weights, card))
    if spec.endswith(".json"):
        found = _recipe_sources(_path(spec))
    elif is_timm_spec(spec):
        found = ModelSources(packages=(TIMM_PREFIX.rstrip(":"),))
    elif is_smp_spec(spec):
        found = ModelSources(packages=(SMP_PACKAGE,))
    elif is_open_clip_spec(spec):
        found = ModelSources(packages=("open_clip",))
    elif is_hugging_face_spec(spec):
        config = _path(config_file(spec))
        files = (config, config.with_name(PREPROCESSOR_FILE))
        found = ModelSources(files=files, packages=("transformers",))
    elif is_factory_spec(spec):
        found = code_sources(spec.rpartition(":")[0])
    else:
        found = ModelSources(files=(_path(spec),))
    if weights is not None:
        found += ModelSources(files=(_path(weights),))
    card_file = card_location(spec, weights, card)
    return found + ModelSources(files=() if card_file is None else (_path(card_file),))


def slide_model_sources(card: str | Path) -> ModelSources:
    """The sources of a slide-model card: the card, its encoder's and its aggregator's."""
    path = _path(card)
    found = ModelSources(files=(path,))
    try:
        slide_card = SlideCard.read(path)
    except (OSError, ValueError):
        return found
    found += encoder_sources(asdict(slide_card.encoder), path.parent)
    aggregator = slide_card.aggregator
    found += code_sources(function_spec_in_folder(aggregator.spec, path.parent).rpartition(":")[0])
    if aggregator.weights:
        found += ModelSources(files=(_path(path.parent / aggregator.weights),))
    return found


def encoder_sources(encoder: dict[str, Any], folder: Path) -> ModelSources:
    """The sources of a slide-model card's ``encoder`` section (paths relative to ``folder``)."""

    def beside(key: str) -> Path | None:
        value = encoder.get(key)
        return None if value is None else _path(folder / Path(str(value)).expanduser())

    spec = encoder_spec_in_folder(str(encoder["spec"]), folder)
    return model_sources(spec, beside("weights"), beside("card"))


def code_sources(target: str) -> ModelSources:
    """The code of a factory's ``target``: a ``.py`` file, else its installed package."""
    if target.endswith(".py"):
        return ModelSources(files=(_path(target),))
    return ModelSources(packages=(target.partition(".")[0],)) if target else ModelSources()


def file_digest(path: Path) -> str:
    """SHA-256 of a whole file; ``"missing"`` when there is none."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    except FileNotFoundError:
        return "missing"
    return digest.hexdigest()


def package_digest(package: str) -> str:
    """SHA-256 of an installed package's version and the bytes of its ``.py`` files."""
    digest = hashlib.sha256()
    try:
        digest.update(importlib.metadata.version(package).encode())
    except importlib.metadata.PackageNotFoundError:
        digest.update(b"no distribution")
    found = importlib.util.find_spec(package)
    if found is None:
        return "missing"
    if found.submodule_search_locations:
        roots = [Path(location) for location in found.submodule_search_locations]
        code = sorted(p for root in roots for p in root.rglob("*.py"))
    else:
        code = [Path(found.origin)] if found.origin else []
    for path in code:
        digest.update(path.name.encode() + b"\0" + file_digest(path).encode())
    return digest.hexdigest()


def _recipe_sources(path: Path) -> ModelSources:
    found = ModelSources(files=(path,))
    try:
        recipe = Recipe.read(path)
    except (OSError, ValueError):
        return found
    folder = path.parent
    found += model_sources(recipe.resolved_spec())
    named = (recipe.backbone.weights, recipe.head.weights, recipe.card)
    files = tuple(_path(folder / name) for name in named if isinstance(name, str) and name)
    return found + ModelSources(files=files)


def _path(value: str | Path) -> Path:
    return Path(value).expanduser().absolute()


def _unique(items: tuple) -> tuple:
    return tuple(dict.fromkeys(items))
