"""Where a head's error sits: image positions classed by their part in a shortcut rollout."""

import torch

from migm_shortcut.train.head import ExampleBatch, format_position_errors, position_classes


def test_positions_are_classed_by_their_part_in_the_rollout():
    # a 3x3 grid; commit steps per position (raster order)
    commit = torch.tensor([[0, 5, 5,
                            5, 2, 5,
                            5, 5, 9]])
    batch = ExampleBatch(features=torch.zeros(1, 2, 1, 9, 1), codes=torch.zeros(1, 9, dtype=torch.long),
                         commit_step=commit, prompt_ids=torch.zeros(1, 1, dtype=torch.long), start=torch.tensor([2]))
    classes = position_classes(batch, k=2, rollout=1, grid=(3, 3))
    as_grid = {name: mask.view(3, 3).int().tolist() for name, mask in classes.items()}
    assert as_grid["committed"] == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]   # before step 2
    assert as_grid["new"] == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]         # committed at step 2: the head's new token
    assert as_grid["near"] == [[0, 1, 1], [1, 0, 1], [1, 1, 1]]        # still masked, beside it
    assert as_grid["far"] == [[0] * 3] * 3
    rolled = position_classes(batch, k=2, rollout=4, grid=(3, 3))     # steps 2..5: everything at 5 is new too
    assert rolled["new"].sum() == 7 and rolled["near"].view(3, 3)[2, 2] and rolled["far"].sum() == 0
    assert sum(m.int() for m in rolled.values()).eq(1).all()          # each position in exactly one class


def test_the_breakdown_prints_each_class_share_of_the_error():
    row = {"step": 0}
    for c, share, mse in (("committed", 0.25, 0.0), ("new", 0.25, 0.4), ("near", 0.25, 0.2), ("far", 0.25, 0.2)):
        row.update({f"share_{c}": share, f"mse_head_{c}": mse, f"mse_copy_{c}": 2 * mse})
    text = format_position_errors([row])
    assert "25.0% 0.4000 0.8000 50.0%" in text  # the new tokens carry half the head's error


def test_validation_rows_split_the_error_by_position_and_the_classes_add_up(tiny_weights, tmp_path, capsys):
    import json

    from cli_route import run

    code, _, err = run(capsys, "collect", "--weights", tiny_weights, "--num", "3", "--steps", "4", "--batch-size", "3",
                       "--out", tmp_path / "traj")
    assert code == 0, err
    code, _, err = run(capsys, "train-head", "--weights", tiny_weights, "--data", tmp_path / "traj", "--out",
                       tmp_path / "head", "--steps", "2", "--batch-size", "2", "--val-trajectories", "1", "--device", "cpu")
    assert code == 0, err
    code, out, err = run(capsys, "validate-head", "--weights", tiny_weights, "--data", tmp_path / "traj", "--head",
                         tmp_path / "head" / "shortcut_head", "--rollout", "2", "--by-position", "--out", tmp_path / "v.json")
    assert code == 0 and "new: positions, mse head" in out, err
    for r in json.loads((tmp_path / "v.json").read_text())["rows"]:
        shares = [r[f"share_{c}"] for c in ("committed", "new", "near", "far")]
        assert abs(sum(shares) - 1) < 1e-9
        whole = sum(r[f"share_{c}"] * r[f"mse_head_{c}"] for c in ("committed", "new", "near", "far"))
        assert abs(whole - r["mse_head"]) < 1e-6 * max(1.0, r["mse_head"])  # the classes partition the positions
