"""Which code a card may name, and the user's explicit trust for the rest.

Model recipes and slide-model cards are data: a file someone sends you. By default they may name
only code that ships with napari-gradcam or with the model libraries it supports: the plugin's
own model factories, ``timm:NAME`` architectures, ``torchvision.models:BUILDER`` and
``torch.nn:MODULE``, and ``{"import": ...}`` of ``timm.layers``, ``torch.nn`` or
``torchvision.ops`` objects. Anything else (another ``module:function``, a ``file.py:function``
named in the card, another import) runs only when the user trusts it: ``trust_code=True`` in the
API, ``--trust-code`` on the command line, or a confirmation in the napari docks, remembered per
file content (sha256) in the per-user state folder. Every reference of a card is checked before
anything it names is imported.

A spec the user gives directly (``load_model("my.py:build")``, ``--model my.py:build``) is the
user's own act and is not checked here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from napari_gradcam.user_state import state_dir

logger = logging.getLogger(__name__)

SHIPPED_FACTORIES = frozenset(
    {
        "napari_gradcam.models.demo_net:build_demo_net",
        "napari_gradcam.models.vit_demo_net:build_vit_demo_net",
        "napari_gradcam.models.demo_encoder:build_demo_encoder",
        "napari_gradcam.core.mil.aggregators:build_attention_mil",
    }
)
"""The plugin's own model factories, the only ``napari_gradcam`` functions a card may name."""
SHIPPED_FACTORY_MODULES = ("torch.nn", "torchvision.models")
"""Modules (not their submodules) whose public classes and builders a card may name."""
SHIPPED_IMPORT_MODULES = ("timm.layers", "torch.nn", "torchvision.ops")
"""Modules (and their submodules) whose objects a card may name with ``{"import": ...}``."""
TRUSTED_CODE_FILE = "trusted_code.json"
"""The file in the per-user state folder that remembers the cards the user chose to trust."""
_CHECKED_FILES: ContextVar[Mapping[Path, str]] = ContextVar(
    "checked_code_files", default=MappingProxyType({})
)
"""Code files checked by the card being loaded (path -> sha256), in this thread's context."""


@dataclass(frozen=True)
class CodeReference:
    """One piece of code a card names, outside what ships with the plugin.

    Attributes
    ----------
    field : str
        Where the card names it, e.g. ``"aggregator.spec"``.
    target : str
        What would run or be imported: ``"module:function"``, ``"/abs/helper.py:build"`` or
        ``"module.name"`` (an import).
    file : Path or None
        The Python file that would be executed, for a ``file.py:function`` reference.
    sha256 : str or None
        The sha256 of that file's content.
    """

    field: str
    target: str
    file: Path | None = None
    sha256: str | None = None

    def describe(self) -> str:
        """One line for people: what runs, from which field (and the file's sha256)."""
        what = f"import {self.target}" if self.field.endswith("import") else self.target
        digest = f", file sha256 {self.sha256}" if self.sha256 else ""
        return f"{what} (field {self.field!r}{digest})"


@dataclass(frozen=True)
class CodeTrustRequest:
    """The code one card file names, to be trusted as a whole.

    Attributes
    ----------
    source : Path
        The card (recipe, slide-model card) that names the code.
    sha256 : str
        The sha256 of the card's content.
    references : tuple of CodeReference
        Every reference outside what ships with the plugin; empty: nothing to trust.
    """

    source: Path
    sha256: str
    references: tuple[CodeReference, ...]

    def fingerprint(self) -> dict[str, Any]:
        """What is remembered: the card's hash and the hash of every file it would execute."""
        files = sorted({(str(r.file), r.sha256) for r in self.references if r.file is not None})
        return {"card_sha256": self.sha256, "files": [list(pair) for pair in files]}


class UntrustedCodeError(Exception):
    """A card names code outside what ships with the plugin, and the user has not trusted it.

    Not a ``ValueError``: the card is not wrong, the user is asked. The napari docks catch it
    to show a confirmation; the command line prints it. ``request`` says what would run.
    """

    def __init__(self, request: CodeTrustRequest) -> None:
        self.request = request
        lines = "\n".join(f"  - {ref.describe()}" for ref in request.references)
        super().__init__(
            f"{request.source} (sha256 {request.sha256}) names code that does not ship with "
            f"napari-gradcam or the model libraries it supports; loading it would run:\n{lines}\n"
            "Nothing from it was imported or run. If you trust this file and the code it names, "
            "opt in: trust_code=True (Python API), --trust-code (command line), or accept the "
            "confirmation in the napari dock (remembered for this exact file content)."
        )


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's content."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_file(spec_target: str, folder: Path) -> Path:
    """The ``.py`` file of a ``file.py`` target named in a card, read from the card's folder."""
    path = Path(spec_target).expanduser()
    return path if path.is_absolute() else folder / path


def is_function_spec(spec: str) -> bool:
    """Whether ``spec`` is ``module:function`` or ``file.py:function``."""
    target, _, name = spec.rpartition(":")
    return len(target) > 1 and name.isidentifier()


def function_spec_in_folder(spec: str, folder: Path) -> str:
    """``spec`` with the ``file.py`` of a ``file.py:function`` read from the card's ``folder``."""
    target, _, name = spec.rpartition(":")
    if is_function_spec(spec) and target.endswith(".py"):
        return f"{code_file(target, folder).resolve()}:{name}"
    return spec


def factory_reference(field: str, spec: str, folder: Path) -> CodeReference | None:
    """The reference of a ``module:function`` or ``file.py:function`` spec named in a card.

    ``None`` when the spec is shipped code (see the module docstring). A ``file.py`` target is
    resolved against the card's ``folder`` and hashed; the file must exist.

    Raises
    ------
    FileNotFoundError
        When a ``file.py`` it names does not exist.
    """
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        path = code_file(target, folder).resolve()
        if not path.is_file():
            raise FileNotFoundError(
                f"field {field!r} names the code file {str(path)!r}, which does not exist "
                "(paths are read from the card's folder)"
            )
        return CodeReference(field, f"{path}:{name}", path, file_sha256(path))
    if spec in SHIPPED_FACTORIES or (
        target in SHIPPED_FACTORY_MODULES and not name.startswith("_")
    ):
        return None
    return CodeReference(field, spec)


def import_reference(field: str, name: str) -> CodeReference | None:
    """The reference of ``{"import": name}``; ``None`` for an object of a shipped module."""
    module = name.rpartition(".")[0]
    if _in_packages(module, SHIPPED_IMPORT_MODULES) and not name.rpartition(".")[2].startswith("_"):
        return None
    return CodeReference(field, name)


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def check_code_trust(request: CodeTrustRequest, *, trust_code: bool) -> None:
    """Return when the card names only shipped code, ``trust_code`` is set, or it is remembered.

    Raises
    ------
    UntrustedCodeError
        Otherwise, naming every reference; nothing has been imported.
    """
    if not request.references or trust_code or is_remembered(request):
        return
    raise UntrustedCodeError(request)


@contextmanager
def checked_files(request: CodeTrustRequest) -> Iterator[None]:
    """While loading the card of ``request``: its code files must still hold what was checked.

    See :func:`checked_source`, which the loader uses to read a code file before running it.
    """
    files = {ref.file: ref.sha256 for ref in request.references if ref.file is not None}
    token = _CHECKED_FILES.set(MappingProxyType({**_CHECKED_FILES.get(), **files}))
    try:
        yield
    finally:
        _CHECKED_FILES.reset(token)


def checked_source(path: Path) -> bytes:
    """The content of a code file about to run: refused if it changed since its card's check.

    Raises
    ------
    ValueError
        When the file is one a card named and its content is no longer the one checked.
    """
    source = Path(path).read_bytes()
    expected = _CHECKED_FILES.get().get(Path(path).resolve())
    if expected is not None and hashlib.sha256(source).hexdigest() != expected:
        raise ValueError(
            f"the code file {path} changed while its card was being loaded (its sha256 is no "
            "longer the one checked); nothing from it was run: load the card again"
        )
    return source


def trusted_code_path() -> Path:
    """The file that remembers the trusted cards (in the per-user state folder)."""
    return state_dir() / TRUSTED_CODE_FILE


def is_remembered(request: CodeTrustRequest) -> bool:
    """Whether the user trusted this card content (and the content of every file it runs).

    An unreadable list of trusted code trusts nothing (logged).
    """
    try:
        entries = _read_trusted()
    except ValueError as err:
        logger.warning("%s; nothing in it is trusted", err)
        return False
    fingerprint = request.fingerprint()
    return any({key: entry.get(key) for key in fingerprint} == fingerprint for entry in entries)


def remember(request: CodeTrustRequest) -> None:
    """Remember that the user trusts this card's content and the code files it names.

    Raises
    ------
    OSError
        When the list cannot be written, or exists but cannot be read (it is never replaced
        then: move it away to start a new one).
    """
    from napari_gradcam.core.output_files import atomic_write

    try:
        entries = _read_trusted()
    except ValueError as err:
        raise OSError(f"{err}; move it away to start a new list") from err
    entry = {
        **request.fingerprint(),
        "card": str(request.source),
        "code": [ref.target for ref in request.references],
    }
    text = json.dumps({"trusted": [*entries, entry]}, indent=2) + "\n"
    atomic_write(trusted_code_path(), lambda path: path.write_text(text, encoding="utf-8"))


def _read_trusted() -> list[dict[str, Any]]:
    """The remembered entries (none when there is no list yet).

    Raises
    ------
    ValueError
        When the list exists but cannot be read.
    """
    path = trusted_code_path()
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["trusted"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"the list of trusted code {path} cannot be read ({err})") from err
    if not isinstance(entries, list):
        raise ValueError(f"the list of trusted code {path} cannot be read (no list)")
    return [entry for entry in entries if isinstance(entry, dict)]
