"""The engagement calibration shipped beside a model (calibration.json in its directory)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.domain.engagement import CALIBRATION_FILE, Calibration


def load_calibration(model_dir: str | Path) -> Calibration | None:
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.exists():
        return None
    return Calibration.model_validate(json.loads(path.read_text()))
