"""The prompts the user explained lately, remembered across sessions (most recent first).

They live in the per-user state folder (``user_state.state_dir``), beside the autosaves and the
list of trusted code. A missing or unreadable file remembers nothing (logged); a failed write
is logged and the session goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from napari_gradcam.user_state import state_dir

logger = logging.getLogger(__name__)

RECENT_PROMPTS_FILE = "recent_prompts.json"
MAX_RECENT = 10
"""Prompts kept; the oldest is forgotten first."""


def recent_prompts_path() -> Path:
    """The file that remembers the prompts."""
    return state_dir() / RECENT_PROMPTS_FILE


def recent_prompts() -> list[str]:
    """The remembered prompts, most recent first (none when the file is missing or unreadable)."""
    path = recent_prompts_path()
    if not path.is_file():
        return []
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("the recent prompts %s cannot be read (%s); none are offered", path, err)
        return []
    if not isinstance(prompts, list):
        return []
    return [p for p in prompts if isinstance(p, str) and p.strip()][:MAX_RECENT]


def remember_prompt(prompt: str) -> list[str]:
    """Put ``prompt`` first (once), keep :data:`MAX_RECENT`, and return the new list."""
    from napari_gradcam.core.output_files import atomic_write

    prompt = prompt.strip()
    prompts = [prompt, *(p for p in recent_prompts() if p != prompt)][:MAX_RECENT]
    text = json.dumps({"prompts": prompts}, indent=2, ensure_ascii=False) + "\n"
    path = recent_prompts_path()
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except OSError as err:
        logger.warning("cannot remember the prompt in %s: %s", path, err)
    return prompts
