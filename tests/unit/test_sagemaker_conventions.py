"""The trainer under SageMaker's script mode: channels, model dir and output dir from its environment."""

from __future__ import annotations

from pathlib import Path

from training.train_sasrec import parser, sagemaker_defaults


def test_the_train_channel_model_dir_and_output_dir_fill_what_the_command_line_leaves_open(tmp_path: Path) -> None:
    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "part-0.jsonl.gz").write_bytes(b"")
    (channel / "part-1.jsonl.gz").write_bytes(b"")
    env = {
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
    }
    args = sagemaker_defaults(parser().parse_args(["--source", "archive", "--epochs", "3"]), env)
    assert args.data == str(channel)  # the archive source reads the whole folder
    assert (args.out, args.int8_out) == (tmp_path / "model", tmp_path / "model" / "int8")
    assert args.report == tmp_path / "output" / "report.json"
    assert args.epochs == 3  # hyperparameters arrive as options


def test_a_single_file_source_takes_the_one_file_in_its_channel_and_the_command_line_wins(tmp_path: Path) -> None:
    (tmp_path / "interactions.csv").write_text("user,item,timestamp\n")
    env = {"SM_CHANNEL_TRAIN": str(tmp_path), "SM_MODEL_DIR": str(tmp_path / "model")}
    args = sagemaker_defaults(parser().parse_args(["--source", "csv"]), env)
    assert args.data == str(tmp_path / "interactions.csv")
    given = sagemaker_defaults(parser().parse_args(["--source", "csv", "--data", "x.csv", "--out", "o"]), env)
    assert (given.data, given.out, given.int8_out) == ("x.csv", Path("o"), None)
    assert sagemaker_defaults(parser().parse_args([]), {}).out is None  # outside SageMaker: nothing changes
