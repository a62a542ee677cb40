"""The retraining jobs' entry script in AWS's PyTorch container (template.yaml, RetrainStateMachine).

SageMaker script mode runs a file (`sagemaker_program`), not a module, from the unpacked source bundle
(`make retrain-bundle`):

    python training/sagemaker_entry.py --before T --seeds 0 --time-budget S   # the training job
    python training/sagemaker_entry.py gate --events DIR --cutoff T ...       # the gate (processing job)

The training job runs `training.train_sasrec --source archive` on the `train` channel (SM_CHANNEL_TRAIN,
SM_MODEL_DIR and SM_OUTPUT_DATA_DIR: `training.train_sasrec.sagemaker_defaults`); `gate` runs
`training.retrain gate` with the rest of the arguments.

Athena's UNLOAD names its files after the query (not ingest's `*.jsonl.gz`), while the archive readers
take `*.jsonl*` (training/sources.py), so a local events folder is first seen through links named for
each file's content (`.jsonl.gz` when gzipped).
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Run as a file, Python puts training/ on sys.path, not the bundle's root that holds the packages.
BUNDLE_ROOT = Path(__file__).resolve().parents[1]
if str(BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(BUNDLE_ROOT))

GZIP_MAGIC = b"\x1f\x8b"


def jsonl_view(folder: Path, scratch: Path) -> Path:
    """``folder`` itself when every file already reads as an archive file; otherwise a folder in ``scratch``
    of links to its files, each named for its content (``.jsonl.gz`` gzipped, ``.jsonl`` plain)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if all(".jsonl" in p.name for p in files):
        return folder
    view = Path(tempfile.mkdtemp(prefix="jsonl-view-", dir=scratch))
    for number, path in enumerate(files):
        if path.name.endswith((".csv", ".metadata", ".manifest")) or path.stat().st_size == 0:
            continue  # not a data file (Athena writes its manifests to the results location, but be sure)
        with path.open("rb") as fh:
            gzipped = fh.read(2) == GZIP_MAGIC
        stem = path.name.split(".", 1)[0]
        (view / f"{number:06d}-{stem}{'.jsonl.gz' if gzipped else '.jsonl'}").symlink_to(path)
    return view


def _events_viewed(args: list[str], scratch: Path) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--events" and Path(out[i + 1]).is_dir():
            out[i + 1] = str(jsonl_view(Path(out[i + 1]), scratch))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    scratch = Path(tempfile.gettempdir())
    if args[:1] == ["gate"]:
        sys.argv = ["training.retrain", "gate", *_events_viewed(args[1:], scratch)]
        runpy.run_module("training.retrain", run_name="__main__", alter_sys=True)
        return 0
    channel = os.environ.get("SM_CHANNEL_TRAIN")
    if channel and Path(channel).is_dir():
        os.environ["SM_CHANNEL_TRAIN"] = str(jsonl_view(Path(channel), scratch))
    from training.train_sasrec import main as train

    return train(["--source", "archive", *args])


if __name__ == "__main__":
    sys.exit(main())
