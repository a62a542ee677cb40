"""The retraining jobs' entry script in AWS's PyTorch container (template.yaml, RetrainStateMachine).

SageMaker script mode runs a file (`sagemaker_program`), not a module, from the unpacked source bundle
(`make retrain-bundle`):

    python training/sagemaker_entry.py --before T --seeds 0 --time-budget S   # the training job
    python training/sagemaker_entry.py gate --events DIR --cutoff T ...       # the gate (processing job)

The training job runs `training.train_sasrec --source archive` on the `train` channel (SM_CHANNEL_TRAIN,
SM_MODEL_DIR and SM_OUTPUT_DATA_DIR: `training.train_sasrec.sagemaker_defaults`); `gate` runs
`training.retrain gate` with the rest of the arguments.

Athena's UNLOAD names its files after the query, not ingest's `*.jsonl.gz`; the archive reader
(`training.sources.archive_objects`) takes them as they are (gzip is recognised by its magic bytes).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

# Run as a file, Python puts training/ on sys.path, not the bundle's root that holds the packages.
BUNDLE_ROOT = Path(__file__).resolve().parents[1]
if str(BUNDLE_ROOT) not in sys.path:
    sys.path.insert(0, str(BUNDLE_ROOT))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["gate"]:
        sys.argv = ["training.retrain", *args]
        runpy.run_module("training.retrain", run_name="__main__", alter_sys=True)
        return 0
    from training.train_sasrec import main as train

    return train(["--source", "archive", *args])


if __name__ == "__main__":
    sys.exit(main())
