"""Pictures of a trained VAE: digit grids and PNG files (`grids`), labelled figures (`figures`).

Every picture is an image tensor [3, H, W] in [0, 1]; `tracking.log_images` sends them to the
run's loggers and PNG files, `grids.write_png` to a file. The training callback `callbacks.PriorGrid`,
`sample`, `beta_grid` and `evaluate` draw with these.
"""

from vae_lightning.pictures.figures import figure_image, manifold_figure, panel_figure, scatter_figure
from vae_lightning.pictures.grids import decoded_grid, image_grid, png_bytes, reconstruction_grid, write_png

__all__ = ["decoded_grid", "figure_image", "image_grid", "manifold_figure", "panel_figure", "png_bytes",
           "reconstruction_grid", "scatter_figure", "write_png"]
