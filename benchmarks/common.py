"""What the benchmark scripts share: the device's name and writing results."""

from __future__ import annotations

import json
import os
from typing import Any

import jax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_name(device: Any = None) -> str:
    device = jax.devices()[0] if device is None else device
    return f"{device.platform.upper()} ({device.device_kind}) {device.id}"


def write_results(out_dir: str, name: str, payload: dict, markdown: str) -> None:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir`` and print the Markdown."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=1)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(markdown)
    print(markdown)
