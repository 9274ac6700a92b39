"""Policies declare their parameters (a ``Settings`` dataclass and their files); the CLI flags, the
sweep-config keys and ``build_policy`` all come from that declaration, so a new policy is one class."""

import inspect
import json
from dataclasses import dataclass, fields

import pytest

from migm_shortcut import MigmError
from migm_shortcut.samplers import (POLICIES, POLICY_FILES, StepOutput, StepPolicy, build_policy, policy_parameters,
                                    register_policy, setting)

from cli_route import run


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_declared_parameter_is_a_constructor_argument(name):
    cls = POLICIES[name]
    params = inspect.signature(cls.__init__).parameters.values()
    accepted = {p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}
    assert set(policy_parameters(name)) == accepted, f"{name}: declaration and constructor disagree"
    assert set(cls.files) <= set(POLICY_FILES)
    for f in fields(cls.Settings):
        assert f.default is None and f.metadata["help"], f"{name}.{f.name}: declare it with setting(help)"


def test_unknown_keys_name_the_parameters_the_policy_takes():
    with pytest.raises(MigmError, match="policy 'fixed' takes no 'budget'; its parameters: interval"):
        build_policy("fixed", budget=3)
    with pytest.raises(MigmError, match="unknown policy 'nope'; choose one of: vanilla, shortcut"):
        build_policy("nope")


class EveryOtherStepPolicy(StepPolicy):
    """A policy defined in one place: compute on even steps, reuse on odd ones, scale the reuse."""

    name = "every-other"

    @dataclass
    class Settings:
        offset: int | None = setting("the first reused step (default 1)")

    def __init__(self, offset: int = 1):
        self.offset = offset

    def step(self, state):
        full = state.step < self.offset or (state.step - self.offset) % 2 == 1
        features = state.backbone.features(state.input_ids) if full else state.prev_features
        return StepOutput(features, state.flags(full))

    def describe(self):
        return {"policy": self.name, "offset": self.offset}


@pytest.fixture
def every_other(monkeypatch):
    """Registered for one test only, so other tests (the demo's "every policy") never see it."""
    monkeypatch.setitem(POLICIES, "every-other", EveryOtherStepPolicy)
    assert register_policy(EveryOtherStepPolicy) is EveryOtherStepPolicy


def test_a_new_policy_gets_its_cli_flag_and_sweep_key_from_its_declaration(tmp_path, capsys, tiny_weights, every_other):
    code, _, err = run(capsys, "sample", "--weights", tiny_weights, "--prompt", "a bag", "--policy", "every-other",
                       "--offset", "2", "--steps", "6", "--out-dir", tmp_path / "s")
    assert code == 0, err
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["policy_params"] == {"policy": "every-other", "offset": 2} and record["mean_full_steps"] == 4
    from migm_shortcut.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--offset OFFSET every-other: the first reused step" in out
    from migm_shortcut.eval.sweep import load_sweep_config

    (tmp_path / "sweep.json").write_text(json.dumps({"settings": [{"policy": "every-other", "steps": 6, "offset": 2}]}))
    assert load_sweep_config(tmp_path / "sweep.json").settings[0].params == {"offset": 2}
    (tmp_path / "bad.json").write_text(json.dumps({"settings": [{"policy": "every-other", "steps": 6, "eps": 2}]}))
    with pytest.raises(MigmError, match="takes no 'eps'; its parameters: offset"):
        load_sweep_config(tmp_path / "bad.json")
