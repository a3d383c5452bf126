"""The fields of a slide-model card, typed and checked, and the code the card names.

See ``slide_model`` for the card's format. Reading a card imports nothing it names: the code
it names is listed (``SlideCard.code_request``) to be checked before the model is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from napari_gradcam.core.json_fields import (
    MAX_SIDE,
    flag_field,
    json_field,
    names_field,
    object_field,
    positive_int,
    positive_number,
    read_json_object,
    read_record,
    section,
    text_field,
)
from napari_gradcam.models.code_trust import (
    CodeTrustRequest,
    factory_reference,
    file_sha256,
    is_function_spec,
)
from napari_gradcam.models.timm_models import is_timm_spec


def function_spec_field(value: object, field: str, source: str) -> str:
    """A ``module:function`` or ``file.py:function`` spec."""
    spec = text_field(value, field, source)
    if not is_function_spec(spec):
        raise ValueError(
            f"{source}: {field!r} must be 'module:function' or 'file.py:function', not {spec!r:.80}"
        )
    return spec


def _tile_size(value: object, field: str, source: str) -> int:
    return positive_int(value, field, source, least=8, most=MAX_SIDE)


def _mpp(value: object, field: str, source: str) -> float:
    return positive_number(value, field, source, "0.5 for 20x")


@dataclass(frozen=True)
class EncoderSection:
    """A slide-model card's ``encoder``: what embeds each tile.

    Attributes
    ----------
    spec : str
        Any ``load_model`` spec of a module returning (N, D) embeddings.
    weights, card : str or None
        Its weights and model card, relative to the card's folder.
    """

    spec: str = json_field(text_field, hint=" (any load_model spec)")
    weights: str | None = json_field(text_field, None)
    card: str | None = json_field(text_field, None)


@dataclass(frozen=True)
class AggregatorSection:
    """A slide-model card's ``aggregator``: what predicts once per slide.

    Attributes
    ----------
    spec : str
        The ``module:function`` or ``file.py:function`` that builds it (read from the older
        key ``factory`` too).
    kwargs : dict
        The function's arguments.
    weights : str or None
        Its weights, relative to the card's folder.
    attention_module : str or None
        The module whose output is the raw attention scores (the hook that reads attention
        when the aggregator offers no ``attention_weights`` method).
    branch_per_class : bool
        One attention branch per class (CLAM-MB).
    uses_coords : bool
        It takes the tiles' level-0 coordinates as a second argument.
    """

    ALIASES: ClassVar[dict[str, str]] = {"factory": "spec"}

    spec: str = json_field(function_spec_field, hint=" ('module:function')")
    kwargs: dict[str, Any] = json_field(object_field, {})
    weights: str | None = json_field(text_field, None)
    attention_module: str | None = json_field(text_field, None)
    branch_per_class: bool = json_field(flag_field, False)
    uses_coords: bool = json_field(flag_field, False)


@dataclass(frozen=True)
class SlideCard:
    """A slide-model card's fields, typed and checked (the format: ``slide_model``).

    Attributes
    ----------
    path : Path
        The card file (not in the file).
    classes : tuple of str
        Slide classes in logit order.
    tile_size : int
        Side of the square tiles the encoder embeds, in pixels at ``mpp``.
    encoder : EncoderSection
    aggregator : AggregatorSection
    name : str
        Human-readable name (default: the file's stem).
    mpp : float or None
        Microns per pixel the tiles are read at.
    description : str
        For people.
    extra : dict
        Anything else, kept as it is.
    """

    path: Path
    classes: tuple[str, ...] = json_field(names_field)
    tile_size: int = json_field(_tile_size)
    encoder: EncoderSection = json_field(section(EncoderSection))
    aggregator: AggregatorSection = json_field(section(AggregatorSection))
    name: str = json_field(text_field, "")
    mpp: float | None = json_field(_mpp, None)
    description: str = json_field(text_field, "")
    extra: dict[str, Any] = json_field(object_field, {})

    @classmethod
    def read(cls, path: Path) -> SlideCard:
        """Read and check a card file.

        Raises
        ------
        FileNotFoundError
            When there is no such file.
        ValueError
            Naming the first missing, unknown or ill-typed field.
        """
        if not path.is_file():
            raise FileNotFoundError(f"no slide-model card {str(path)!r}")
        data = read_json_object(path, "the slide-model card")
        return read_record(cls, data, f"the slide-model card {path}", path=path)

    @property
    def title(self) -> str:
        """The card's name, else its file's stem."""
        return self.name or self.path.stem

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON data, each key under its current name."""
        data = asdict(self)
        del data["path"]
        return data

    def code_request(self) -> CodeTrustRequest:
        """The code this card names outside what ships with the plugin, to check first.

        A recipe named as the encoder is checked on its own when it is loaded.
        """
        folder = self.path.parent
        references = [factory_reference("aggregator.spec", self.aggregator.spec, folder)]
        encoder = self.encoder.spec
        if is_function_spec(encoder) and not is_timm_spec(encoder):
            references.append(factory_reference("encoder.spec", encoder, folder))
        found = tuple(ref for ref in references if ref is not None)
        return CodeTrustRequest(self.path, file_sha256(self.path), found)
