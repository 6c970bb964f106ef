"""How checkpoints reach the disk: atomically (`AtomicCheckpointIO`, a Lightning checkpoint-IO plugin
that training always installs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from vae_lightning.core.files import remove_stale_temporaries, write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to `.<name>.tmp-<pid>` in the target's folder, flushes it to the disk,
    then renames it over the target. A rename within a folder is atomic (`os.replace`), so a crash
    or SIGKILL at any moment leaves either the previous complete file or the new complete one,
    never a truncated one. (Lightning's own writer serializes in memory first but then writes the
    target file in place.) The temporary file of a killed writer is removed by the next save of
    the same file. Remote (fsspec) paths are written by Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        remove_stale_temporaries(target)  # first: a killed writer's part may be what fills the disk
        write_atomically(target, lambda f: torch.save(checkpoint, f), sync=True, size=tensor_bytes(checkpoint))


def tensor_bytes(tree: Any) -> int:
    """The bytes of the tensors in a checkpoint (dicts, lists and tuples of them): nearly all of its file."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(tensor_bytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(tensor_bytes(v) for v in tree)
    return 0
