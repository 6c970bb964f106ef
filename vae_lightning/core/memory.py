"""Sizes bounded by the machine: a size a user sets (a number of samples, images, components, grid
points) is refused up front, with one line that names the key, the memory it would need and the largest
value that fits, when what it allocates at once would not fit in the memory this machine has free.

Work that can be done in chunks is done in chunks (IWAE draws, quadrature cells, decoded samples); what
cannot (a tensor the size of the setting) is checked here first, so an oversized setting never ends in an
allocator traceback.
"""

from __future__ import annotations

import math
import os

from vae_lightning.core.errors import ParameterError

# The share of the free memory one allocation may take: the rest is for the process and its neighbours.
USABLE_SHARE = 0.5
FLOAT_BYTES = 4


def available_bytes() -> int:
    """Memory this machine has free now (Linux: MemAvailable), else its physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def human(n_bytes: float) -> str:
    """1536 -> '1.5 KB', in powers of 1024."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1024 or unit == "PB":
            return f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} EB"


def check_fits(key: str, value: int, bytes_each: float, fixed: float = 0, what: str = "", power: int = 1) -> None:
    """Raise ParameterError unless value**power units of `bytes_each` bytes (plus `fixed`) fit in the usable
    share of the free memory (`power`: a grid of value points per dimension in `power` dimensions); the
    message names the memory asked for and the largest value that fits."""
    budget = USABLE_SHARE * available_bytes()
    try:
        need = fixed + float(value) ** power * bytes_each
    except OverflowError:
        need = math.inf
    if need <= budget:
        return
    largest = max(0, int(max(0.0, (budget - fixed) / bytes_each) ** (1 / power)))
    raise ParameterError(key, value, f"at most {largest} on this machine: {value} would need {human(need)} "
                                     f"{what}at once and {human(budget)} is free to use")
