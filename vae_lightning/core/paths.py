"""Where the project's own files are: the repository root (run outputs and the default data folder are
under it) and the config folder every command composes from."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
