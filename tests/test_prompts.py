import pytest
import torch

from migm_shortcut.embedded.backbone import BackboneConfig, EmbeddedLayout as SequenceLayout
from migm_shortcut.sequence import PAD, UNCOND
from migm_shortcut.errors import MigmError
from migm_shortcut.embedded.prompts import CLASS_NAMES, prompt_class

USUAL_NAMES = ["t-shirt", "top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


@pytest.mark.parametrize("name", USUAL_NAMES)
@pytest.mark.parametrize("article", ["a", "an"])
def test_every_usual_class_prompt_is_accepted(name, article):
    layout = SequenceLayout(BackboneConfig())
    ids = layout.encode_prompt(f"a photo of {article} {name}")
    assert ids.shape == (12,) and ids[0] != UNCOND


def test_prompt_names_the_right_class():
    assert [prompt_class(f"a photo of a {n}") for n in CLASS_NAMES] == list(range(10))
    assert prompt_class("A Photo of a T-shirt/Top.") == 0
    assert prompt_class("an ankle boot") == 9
    assert prompt_class("boots") == 9


@pytest.mark.parametrize("prompt,match", [
    ("a photo of a giraffe", "unknown word 'giraffe'"),
    ("a photo of a", "names no class"),
    ("a sneaker and a bag", "more than one class"),
])
def test_bad_prompts(prompt, match):
    with pytest.raises(MigmError, match=match):
        prompt_class(prompt)


def test_unconditional_and_padding():
    layout = SequenceLayout(BackboneConfig())
    assert layout.encode_prompt(None).tolist() == [UNCOND] + [PAD] * 11
    ids = layout.encode_prompt("dress")
    assert (ids[1:] == PAD).all()


def test_layout_positions():
    layout = SequenceLayout(BackboneConfig(grid_size=3, prompt_len=2))
    # [p p] BOI [c c c EOR] x3 EOI
    assert layout.seq_len == 2 + 1 + 12 + 1
    assert layout.image_positions.tolist() == [3, 4, 5, 7, 8, 9, 11, 12, 13]
    assert layout.eor_positions.tolist() == [6, 10, 14]
    seq = layout.template(torch.zeros(1, 2, dtype=torch.long))
    assert seq.shape == (1, 16)
