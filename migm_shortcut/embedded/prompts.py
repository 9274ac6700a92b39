"""Text prompts for the embedded model: class names, phrasings and a word-level tokenizer.

The embedded backbone is a text-to-image model in the Lumina-DiMOO mould, but its
"language" is a closed vocabulary: every word it knows is listed in ``WORDS``. A prompt
must name exactly one Fashion-MNIST class ("a photo of an ankle boot", "trousers",
"a product photo of a sneaker"); anything else is rejected with a clear message.
"""

from __future__ import annotations

import random
import re

from migm_shortcut.errors import MigmError

CLASS_NAMES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]

# Every phrase that names a class; multi-word phrases are matched before single words.
CLASS_PHRASES: dict[str, int] = {
    "t-shirt": 0, "tshirt": 0, "t-shirt top": 0, "top": 0, "tee": 0,
    "trouser": 1, "trousers": 1, "pants": 1, "jeans": 1,
    "pullover": 2, "sweater": 2, "jumper": 2,
    "dress": 3,
    "coat": 4, "jacket": 4,
    "sandal": 5, "sandals": 5,
    "shirt": 6,
    "sneaker": 7, "sneakers": 7, "trainer": 7,
    "bag": 8, "handbag": 8,
    "ankle boot": 9, "ankle boots": 9, "boot": 9, "boots": 9,
}

FILLER_WORDS = [
    "a", "an", "the", "photo", "picture", "image", "of", "product", "black", "and",
    "white", "small", "grayscale", "centered", "catalog", "ankle",
]

TEMPLATES = [
    "a photo of {a} {c}", "a picture of {a} {c}", "an image of {a} {c}", "{a} {c}", "{c}",
    "a product photo of {a} {c}", "a black and white photo of {a} {c}", "a photo of the {c}",
    "a small photo of {a} {c}", "a grayscale catalog image of {a} {c}", "a centered photo of {a} {c}",
]

# Fixed order: the backbone's text-token ids are positions in this list, so never reorder it.
WORDS = sorted({w for p in CLASS_PHRASES for w in p.split()} | set(FILLER_WORDS))

_WORD_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def split_words(prompt: str) -> list[str]:
    return _WORD_RE.findall(prompt.lower())


def prompt_class(prompt: str) -> int:
    """The class a prompt names; raises ``MigmError`` unless it names exactly one."""
    words = split_words(prompt)
    unknown = [w for w in words if w not in WORDS]
    if unknown:
        raise MigmError(
            f"unknown word {unknown[0]!r} in prompt {prompt!r}; the embedded model knows: {', '.join(WORDS)}"
        )
    found: list[int] = []
    i = 0
    while i < len(words):
        two = " ".join(words[i : i + 2])
        if two in CLASS_PHRASES:
            found.append(CLASS_PHRASES[two])
            i += 2
        elif words[i] in CLASS_PHRASES:
            found.append(CLASS_PHRASES[words[i]])
            i += 1
        else:
            i += 1
    if len(set(found)) != 1:
        names = ", ".join(CLASS_NAMES)
        what = "names no class" if not found else "names more than one class"
        raise MigmError(f"prompt {prompt!r} {what}; name exactly one of: {names}")
    return found[0]


def canonical_prompt(class_index: int) -> str:
    name = CLASS_NAMES[class_index]
    article = "an" if name[0] in "aeiou" else "a"
    return f"a photo of {article} {name}"


def class_prompts(per_class: int) -> tuple[list[str], list[int]]:
    """The canonical prompt of every class, ``per_class`` times each, in class order, with its class."""
    classes = [c for c in range(len(CLASS_NAMES)) for _ in range(per_class)]
    return [canonical_prompt(c) for c in classes], classes


def random_prompt(class_index: int, rng: random.Random) -> str:
    phrases = [p for p, c in CLASS_PHRASES.items() if c == class_index]
    phrase = rng.choice(phrases)
    article = "an" if phrase[0] in "aeiou" else "a"
    return rng.choice(TEMPLATES).format(a=article, c=phrase)
