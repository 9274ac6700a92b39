"""The CLI steps every model's route test shares: run a command, and collect then train a head."""

from __future__ import annotations

from pathlib import Path

from migm_shortcut.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def collect_and_train(capsys, model_args: list, prompts_file: Path, tmp_path: Path) -> Path:
    """``collect`` 2 trajectories of 4 steps, then ``train-head`` for 3 steps; returns the head folder."""
    code, _, err = run(capsys, "collect", *model_args, "--prompts-file", prompts_file, "--num", "2", "--steps", "4",
                       "--shard-size", "2", "--batch-size", "2", "--out", tmp_path / "traj")
    assert code == 0, err
    code, _, err = run(capsys, "train-head", *model_args, "--data", tmp_path / "traj", "--out", tmp_path / "head",
                       "--steps", "3", "--batch-size", "2", "--val-trajectories", "1", "--device", "cpu")
    assert code == 0, err
    return tmp_path / "head" / "shortcut_head"
