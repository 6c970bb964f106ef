"""The page: the views of one run or of a sweep's runs as JSON inside one HTML file with the explorer's script
and style inlined (explorer.js, explorer.css beside this module), so it opens from disk with no server and no
network. The test images that several runs share are stored once."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_atomically

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="vae-lightning-explore" content="{note}">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
<header><h1>{title}</h1><p class="note">{note}</p></header>
<main id="explorer"></main>
<script type="application/json" id="explorer-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return resources.files("vae_lightning.explorer").joinpath(name).read_text(encoding="utf-8")


def page_data(views: Sequence[dict[str, Any]], selectors: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The page's JSON: the views (each with its test images replaced by an index into `datasets`, identical
    image sets stored once) and, for a sweep, `configs`: [{"label", "runs": [{"seed", "view"}]}]."""
    datasets: dict[str, int] = {}
    runs = []
    for view in views:
        view = dict(view)
        view["dataset"] = datasets.setdefault(view.pop("images"), len(datasets))
        runs.append(view)
    return {"runs": runs, "datasets": list(datasets), "configs": list(selectors) if selectors else None}


def page_html(title: str, views: Sequence[dict[str, Any]], selectors: Sequence[dict[str, Any]] | None = None,
              note: str = "") -> str:
    """The whole page as text: one run's view, or a sweep's with its `selectors` (see `page_data`)."""
    data = json.dumps(page_data(views, selectors), separators=(",", ":"), allow_nan=False)
    return TEMPLATE.format(title=html.escape(title), note=html.escape(note), style=_asset("explorer.css"),
                           script=_asset("explorer.js"), data=data.replace("</", "<\\/"))


SOURCE_META = '<meta name="vae-lightning-explore" content="{}">'


def check_replaceable(path: Path, source: str, overwrite: bool) -> None:
    """Whether `explore` may write its page to `path`: nothing there, a page of the same run or sweep (`source`, its
    folder; the page is a view of it, rebuilt with today's settings), or overwrite=true; else a UserError naming what
    is there, so that a file the user did not ask to replace is never replaced."""
    if overwrite or not path.exists():
        return
    try:
        with open(path, "rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        head = ""
    if SOURCE_META.format(html.escape(source)) in head:
        return
    what = ("the explorer page of another run or sweep" if 'name="vae-lightning-explore"' in head
            else "a file this command did not write")
    raise UserError(f"output={path} exists ({what}); add overwrite=true to replace it, or choose another "
                    "output=<file.html>")


def write_page(path: Path, text: str) -> Path:
    """Write the page atomically (a reader never sees half of it); returns `path`."""
    write_atomically(path, lambda f: f.write(text.encode("utf-8")))
    return path
