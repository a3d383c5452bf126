"""A vision transformer's blocks and its score projection: a block's tokens to the model's output.

LeGrad scores each chosen block as if it were the last: the block's output tokens go through
the rest of the model's own head (final norm, pooling, classifier or image projection) to the
model's output, logits or an image embedding, on which the target is scored. That path is read
from each family's code and declared here, never guessed:

- timm's ``VisionTransformer`` layout (and the ViT demo): ``blocks``, scored by
  ``forward_head(norm(x))``;
- torchvision's ``VisionTransformer``: ``encoder.layers``, scored by
  ``heads(encoder.ln(x)[:, 0])``;
- open_clip's ``VisionTransformer`` (an image tower): ``transformer.resblocks``, scored by its
  own ``_pool(x)`` (``ln_post`` and the pooling), then ``@ proj``;
- open_clip's ``TimmModel`` (a timm trunk, e.g. SigLIP's): the trunk's timm layout, then
  open_clip's ``head``;
- a module that declares its own score projection, ``embed_tokens(tokens)`` (the image towers of
  ``models``: open_clip's, with a ViT or a timm trunk, and Hugging Face's CLIP and SigLIP),
  around exactly one of the transformers above or a Hugging Face ``CLIPVisionModel`` /
  ``SiglipVisionModel`` (``encoder.layers``).

Every run checks the declaration: the last block's tokens, projected, must reproduce the
model's output (``scored_blocks``), or the model is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from napari_gradcam.core.explain.hooks import (
    GRADCAM_HINT,
    attention_modules,
    matches_to_precision,
    owned_forward_hook,
)
from napari_gradcam.core.explain.model_layers import vit_facts

Project = Callable[[torch.Tensor], torch.Tensor]
NEEDS = (
    "LeGrad scores each block through the model's own final norm, pooling and head, declared "
    "for timm's VisionTransformer layout (blocks, norm, forward_head, patch_embed, "
    "num_prefix_tokens), torchvision's VisionTransformer and open_clip's VisionTransformer "
    "and TimmModel (image towers), or by the model's embed_tokens(tokens) around one of them or "
    "a Hugging Face CLIP or SigLIP vision model"
)


@dataclass(frozen=True)
class TransformerTower:
    """The blocks of a vision transformer and how their tokens become its output.

    Attributes
    ----------
    family : str
        Which declaration matched (``"timm"``, ``"torchvision"``, ``"open_clip"``).
    blocks : tuple of (str, nn.Module)
        The transformer blocks by name, in run order.
    attentions : tuple of (str, nn.Module)
        Each block's self-attention module by name.
    project : callable or None
        Block output tokens, in the blocks' own layout, to the model's output; ``None`` for a
        transformer whose output is not a tensor (Hugging Face's), scored by a wrapper.
    prefix_tokens : int
        Tokens before the patch tokens (class, registers).
    patch_size : tuple of int
        (py, px) input pixels per patch token.
    pad : bool
        Whether a partial patch at the bottom/right edge becomes a token.
    """

    family: str
    blocks: tuple[tuple[str, nn.Module], ...]
    attentions: tuple[tuple[str, nn.Module], ...]
    project: Project | None
    prefix_tokens: int
    patch_size: tuple[int, int]
    pad: bool = False

    def grid(self, input_hw: tuple[int, int]) -> tuple[int, int]:
        """Patch grid (h, w) of an input of ``input_hw`` pixels."""
        cells = math.ceil if self.pad else math.floor
        return (
            int(cells(input_hw[0] / self.patch_size[0])),
            int(cells(input_hw[1] / self.patch_size[1])),
        )


def transformer_tower(model: nn.Module) -> TransformerTower:
    """The declared tower of ``model``; ``ValueError`` saying what LeGrad needs otherwise."""
    tower = _family_tower(model)
    if tower is not None and tower.project is not None:
        return tower
    embed_tokens = getattr(model, "embed_tokens", None)
    if callable(embed_tokens):
        inner = _inner_towers(model)
        if len(inner) == 1:
            name, tower = inner[0]
            return replace(
                tower,
                family=f"{type(model).__name__} ({tower.family})",
                blocks=tuple((f"{name}.{block}", m) for block, m in tower.blocks),
                attentions=tuple((f"{name}.{attn}", m) for attn, m in tower.attentions),
                project=embed_tokens,
            )
        found = f"{len(inner)} transformers in it" if inner else "no transformer it knows"
        raise ValueError(f"{NEEDS}; {type(model).__name__} declares embed_tokens, with {found}")
    raise ValueError(f"{NEEDS}; {type(model).__name__} is none of them: {GRADCAM_HINT}")


def _family_tower(module: nn.Module) -> TransformerTower | None:
    families = (
        _open_clip_tower,
        _open_clip_timm_tower,
        _torchvision_tower,
        _hugging_face_tower,
        _timm_tower,
    )
    for declared in families:
        tower = declared(module)
        if tower is not None:
            return tower
    return None


def _inner_towers(model: nn.Module) -> list[tuple[str, TransformerTower]]:
    """The outermost submodules of ``model`` that are a declared family, by name."""
    found: list[tuple[str, TransformerTower]] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        tower = _family_tower(module)
        if tower is not None:
            found.append((name, tower))
    return found


def _timm_tower(model: nn.Module) -> TransformerTower | None:
    """The timm contract: ``forward_head(norm(blocks(tokens)))`` is the output."""
    blocks, norm = getattr(model, "blocks", None), getattr(model, "norm", None)
    facts = vit_facts(model)
    if not (
        isinstance(blocks, (nn.Sequential, nn.ModuleList))
        and isinstance(norm, nn.Module)
        and callable(getattr(model, "forward_head", None))
        and facts is not None
        and facts.module == ""
        and facts.prefix_tokens is not None
    ):
        return None
    named = tuple((f"blocks.{i}", block) for i, block in enumerate(blocks))
    return TransformerTower(
        "timm",
        named,
        _attentions(named, lambda name, block: attention_modules(block)),
        lambda tokens: model.forward_head(norm(tokens)),
        facts.prefix_tokens,
        facts.patch_size,
        facts.pad,
    )


def _torchvision_tower(model: nn.Module) -> TransformerTower | None:
    """torchvision: the class token of ``encoder.ln(x)`` into ``heads``."""
    kind = type(model)
    if (kind.__module__, kind.__name__) != (
        "torchvision.models.vision_transformer",
        "VisionTransformer",
    ):
        return None  # matched by name: torchvision is never imported here
    named = tuple(
        (f"encoder.layers.{name}", block) for name, block in model.encoder.layers.named_children()
    )
    return TransformerTower(
        "torchvision",
        named,
        _attentions(named, lambda name, block: [("self_attention", block.self_attention)]),
        lambda tokens: model.heads(model.encoder.ln(tokens)[:, 0]),
        1,
        (model.patch_size, model.patch_size),
    )


def _open_clip_tower(model: nn.Module) -> TransformerTower | None:
    """open_clip's image tower: its own ``_pool`` (ln_post and pooling), then ``proj``."""
    if not type(model).__module__.startswith("open_clip."):
        return None
    from open_clip.transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        return None
    batch_first = model.transformer.batch_first

    def project(tokens: torch.Tensor) -> torch.Tensor:
        pooled = model._pool(tokens if batch_first else tokens.transpose(0, 1))[0]
        return pooled if model.proj is None else pooled @ model.proj

    resblocks = model.transformer.resblocks
    named = tuple((f"transformer.resblocks.{i}", block) for i, block in enumerate(resblocks))
    return TransformerTower(
        "open_clip",
        named,
        _attentions(named, lambda name, block: [("attn", getattr(block, "attn", None))]),
        project,
        1,
        tuple(model.patch_size),
    )


def _open_clip_timm_tower(model: nn.Module) -> TransformerTower | None:
    """open_clip's timm trunk: ``head(trunk(x))``, the trunk in timm's layout."""
    if not type(model).__module__.startswith("open_clip."):
        return None
    from open_clip.timm_model import TimmModel

    trunk = _timm_tower(model.trunk) if isinstance(model, TimmModel) else None
    if trunk is None:
        return None
    return replace(
        trunk,
        family="open_clip timm",
        blocks=tuple((f"trunk.{name}", block) for name, block in trunk.blocks),
        attentions=tuple((f"trunk.{name}", attention) for name, attention in trunk.attentions),
        project=lambda tokens: model.head(trunk.project(tokens)),
    )


def _hugging_face_tower(model: nn.Module) -> TransformerTower | None:
    """Hugging Face's CLIP and SigLIP vision models: blocks only, their output is no tensor."""
    embeddings = getattr(model, "embeddings", None)
    prefix = {"CLIPVisionEmbeddings": 1, "SiglipVisionEmbeddings": 0}.get(type(embeddings).__name__)
    if not type(model).__module__.startswith("transformers.") or prefix is None:
        return None
    named = tuple((f"encoder.layers.{i}", layer) for i, layer in enumerate(model.encoder.layers))
    patch = int(model.config.patch_size)
    return TransformerTower(
        "transformers",
        named,
        _attentions(named, lambda name, layer: [("self_attn", layer.self_attn)]),
        None,
        prefix,
        (patch, patch),
    )


def _attentions(
    blocks: tuple[tuple[str, nn.Module], ...],
    find: Callable[[str, nn.Module], list[tuple[str, nn.Module | None]]],
) -> tuple[tuple[str, nn.Module], ...]:
    """Each block's one self-attention module; ``ValueError`` for a block without one."""
    found = []
    for name, block in blocks:
        inside = find(name, block)
        if len(inside) != 1 or not isinstance(inside[0][1], nn.Module):
            raise ValueError(f"block {name!r} has no single attention module to read; {NEEDS}")
        found.append((f"{name}.{inside[0][0]}", inside[0][1]))
    return tuple(found)


@dataclass
class BlockScores:
    """What the blocks gave: the chosen ones' scored outputs (in the graph), the last one's."""

    projected: list[torch.Tensor] = field(default_factory=list)
    last: torch.Tensor | None = None

    def check(self, tower: TransformerTower, output: torch.Tensor) -> None:
        """Refuse a model whose last block, projected and scored, is not its scored output.

        ``output`` is the model's output through the same ``head`` (``ValueError``).
        """
        if self.last is None or self.last.shape != output.shape:
            raise ValueError(
                f"the {tower.family} score projection did not give the model's output shape; "
                f"{GRADCAM_HINT}"
            )
        if not matches_to_precision(self.last.to(output.dtype), output.detach()):
            raise ValueError(
                f"the {tower.family} score projection of the last block does not reproduce "
                "the model's output: its forward is not the one declared for its family (a "
                f"wrapper or another head); {GRADCAM_HINT}"
            )


@contextmanager
def scored_blocks(
    tower: TransformerTower,
    chosen: list[str],
    head: Callable[[object], torch.Tensor],
    on_block: Callable[[], None],
) -> Iterator[BlockScores]:
    """Project the outputs of the ``chosen`` blocks (by name) during the forwards inside.

    ``head`` turns a projected output into what the target scores (as it does the model's
    output). A chosen block's output goes on detached, so its graph holds that block alone
    and a block's attention reaches no later block's score. ``on_block()`` is called after
    each. The last block is projected in any case, for ``BlockScores.check``.
    """
    scores = BlockScores()
    last = tower.blocks[-1][0]

    def hook_for(name: str) -> Callable[..., torch.Tensor | None]:
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor | None:
            if not isinstance(output, torch.Tensor) or output.ndim != 3:
                raise ValueError(f"block {name!r} does not return tokens (N, T, C); {NEEDS}")
            projected = head(tower.project(output))
            if name == last:
                scores.last = projected.detach()
            if name not in chosen:
                return None
            scores.projected.append(projected)
            on_block()
            return output.detach()

        return hook

    with ExitStack() as stack:
        for name, block in tower.blocks:
            if name in chosen or name == last:
                stack.callback(owned_forward_hook(block, hook_for(name)).remove)
        yield scores
