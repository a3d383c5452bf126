"""The fields of a slide-model card, typed and checked, and the code the card names.

See ``slide_model`` for the card's format. Reading a card imports nothing it names: the code
it names is listed (``SlideCard.code_request``) to be checked before the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_gradcam.core.json_fields import (
    MAX_SIDE,
    flag_field,
    names_field,
    object_field,
    optional_text,
    positive_int,
    positive_number,
    read_json_object,
    refuse_unknown,
    text_field,
)
from napari_gradcam.models.code_trust import (
    CodeTrustRequest,
    factory_reference,
    file_sha256,
    is_function_spec,
)
from napari_gradcam.models.timm_models import is_timm_spec

CARD_KEYS = frozenset(
    {"name", "description", "classes", "tile_size", "mpp", "encoder", "aggregator", "extra"}
)
ENCODER_KEYS = frozenset({"spec", "weights", "card"})
AGGREGATOR_KEYS = frozenset(
    {"factory", "kwargs", "weights", "attention_module", "branch_per_class", "uses_coords"}
)


@dataclass(frozen=True)
class SlideCard:
    """A slide-model card's fields, typed and checked (the format: ``slide_model``)."""

    path: Path
    data: dict[str, Any]
    name: str
    classes: tuple[str, ...]
    tile_size: int
    mpp: float | None
    encoder_spec: str
    encoder_weights: str | None
    encoder_card: str | None
    factory: str
    kwargs: dict[str, Any]
    aggregator_weights: str | None
    attention_module: str | None
    branch_per_class: bool
    uses_coords: bool

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
        source = f"the slide-model card {path}"
        encoder = object_field(_field(data, "encoder", path), "encoder", source)
        aggregator = object_field(_field(data, "aggregator", path), "aggregator", source)
        refuse_unknown(data, CARD_KEYS, "", source)
        refuse_unknown(encoder, ENCODER_KEYS, "encoder.", source)
        refuse_unknown(aggregator, AGGREGATOR_KEYS, "aggregator.", source)
        if "spec" not in encoder:
            raise ValueError(f"{source}: 'encoder' needs a 'spec' (any load_model spec)")
        if "factory" not in aggregator:
            raise ValueError(f"{source}: 'aggregator' needs a 'factory' ('module:function')")
        factory = text_field(aggregator["factory"], "aggregator.factory", source)
        if not is_function_spec(factory):
            raise ValueError(
                f"{source}: 'aggregator.factory' must be 'module:function' or "
                f"'file.py:function', not {factory!r:.80}"
            )
        mpp = data.get("mpp")
        return cls(
            path=path,
            data=data,
            name=text_field(data.get("name", path.stem), "name", source),
            classes=names_field(_field(data, "classes", path), "classes", source),
            tile_size=positive_int(
                _field(data, "tile_size", path), "tile_size", source, least=8, most=MAX_SIDE
            ),
            mpp=None if mpp is None else positive_number(mpp, "mpp", source, "0.5 for 20x"),
            encoder_spec=text_field(encoder["spec"], "encoder.spec", source),
            encoder_weights=optional_text(encoder, "weights", "encoder.", source),
            encoder_card=optional_text(encoder, "card", "encoder.", source),
            factory=factory,
            kwargs=object_field(aggregator.get("kwargs", {}), "aggregator.kwargs", source),
            aggregator_weights=optional_text(aggregator, "weights", "aggregator.", source),
            attention_module=optional_text(aggregator, "attention_module", "aggregator.", source),
            branch_per_class=flag_field(
                aggregator.get("branch_per_class", False), "aggregator.branch_per_class", source
            ),
            uses_coords=flag_field(
                aggregator.get("uses_coords", False), "aggregator.uses_coords", source
            ),
        )

    def code_request(self) -> CodeTrustRequest:
        """The code this card names outside what ships with the plugin, to check first.

        A recipe named as the encoder is checked on its own when it is loaded.
        """
        folder = self.path.parent
        references = [factory_reference("aggregator.factory", self.factory, folder)]
        if is_function_spec(self.encoder_spec) and not is_timm_spec(self.encoder_spec):
            references.append(factory_reference("encoder.spec", self.encoder_spec, folder))
        found = tuple(ref for ref in references if ref is not None)
        return CodeTrustRequest(self.path, file_sha256(self.path), found)


def _field(data: dict[str, Any], key: str, path: Path) -> Any:
    if key not in data:
        raise ValueError(f"the slide-model card {path} has no {key!r}")
    return data[key]
