"""The latent-space explorer: one self-contained HTML page per run or per sweep, to look at a latent space.

What a page holds, per run (a `view`, built by `explorer.view.run_view`): the test images' posterior means
on the latent plane (for a latent of more than 2 dimensions, the plane of their first two principal
components through their mean: `explorer.plane`), the prior's and the aggregate posterior's log-densities on
a grid over that plane, the draws of the samplers, and the decoder: its weights as base64 float32 for the
page's own forward pass when the page can run it (`explorer.decoder`: MLP decoders, a likelihood whose mean
the page knows), else an atlas of decoded images on a grid. `explorer.page` writes the views, the script and
the style into one HTML file that needs no server and no network.

The page's script (`explorer.js`) is the only other consumer of a view's format: a new layer is a new key of
the view plus its drawing in the script; a new decoder layer is one entry of `decoder.LAYER_OPS` and its case
in the script's `forward`. A decoder the page cannot run falls back to the atlas, never to an error.
"""

from vae_lightning.explorer.decoder import decoder_spec
from vae_lightning.explorer.page import page_html, write_page
from vae_lightning.explorer.plane import Plane, latent_plane
from vae_lightning.explorer.view import PageSettings, run_view

__all__ = ["PageSettings", "Plane", "decoder_spec", "latent_plane", "page_html", "run_view", "write_page"]
