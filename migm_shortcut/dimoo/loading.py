"""Getting a Lumina-DiMOO checkpoint's published model class and weights into memory, unmodified.

Where the model code comes from, in this order:

1. ``model_code``: a folder the user names (``--model-code DIR``): Lumina-DiMOO's ``model/``
   package, or MIGM-Shortcut's fork of it, whose ``__init__.py`` exports the model class. The
   published inference scripts import the class this way, and the hub folder ships no code;
2. the checkpoint folder's own code, named by ``config.json``'s ``auto_map`` (transformers'
   remote code).

Both run code from disk, so both need ``trust_remote_code``. The class is found by the name
``config.json``'s ``architectures`` gives, else ``LLaDAForMultiModalGeneration``, else
``LLaDAModelLM``.

**The compatibility step.** The published ``LLaDAModelLM.__init__`` never calls ``post_init()``
and overrides ``tie_weights()`` without arguments. transformers up to 4.x tolerates both;
transformers 5 sets its tied-weight bookkeeping in ``post_init`` and calls
``tie_weights(recompute_mapping=False)``, so loading fails. Instead of editing the published code,
the class is loaded through a subclass that calls ``post_init()`` when the published ``__init__``
did not, and calls the published ``tie_weights`` the way it was written. Nothing else differs:
module names, state-dict keys and the forward are the published class's own.

**Low-memory loading.** Weights load in their dtype (no fp32 copy first) with transformers'
``low_cpu_mem_usage``, and on a GPU straight to it (``device_map``), so an 8B checkpoint never
sits in host memory in full before the first step.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.io import read_json

CLASS_NAMES = ("LLaDAForMultiModalGeneration", "LLaDAModelLM")


def folder_code(folder: Path, config: dict) -> list[str]:
    """The Python files (or ``auto_map``) a checkpoint folder ships, which loading it would run."""
    files = sorted(p.name for p in folder.glob("*.py"))
    return files if (files or config.get("auto_map")) else []


def import_code_package(code: Path):
    """Import a model-code folder as a package (its relative imports work), once per folder."""
    init = code / "__init__.py"
    if not init.is_file():
        raise MigmError(f"--model-code {code}: not a Python package (no __init__.py); pass Lumina-DiMOO's model/ folder")
    name = "migm_model_code_" + hashlib.sha256(str(code.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(code)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[name]
        raise MigmError(f"--model-code {code}: importing it failed ({exc}); install what it imports") from None
    return module


def model_class(folder: Path, model_code: str | Path | None, trust_remote_code: bool) -> type:
    """The published model class for ``folder`` (see the module docstring for where it comes from)."""
    config = read_json(folder / "config.json")
    shipped = folder_code(folder, config)
    if model_code is None and not shipped:
        raise MigmError(f"{folder} holds a 'llada' config but no model code (no auto_map, no .py files), as the "
                        "downloaded Lumina-DiMOO folder does; name the code with --model-code DIR (Lumina-DiMOO's "
                        "model/ folder) and --trust-remote-code")
    if not trust_remote_code:
        what = f"--model-code {model_code}" if model_code is not None else f"{folder} ships its own model code ({', '.join(shipped)})"
        raise MigmError(f"{what}: loading it runs that code. Pass --trust-remote-code (Python: trust_remote_code=True) "
                        "if you trust it")
    named = config.get("architectures") or []
    names = [*named, *[n for n in CLASS_NAMES if n not in named]]
    if model_code is not None:
        code = Path(model_code)
        if not code.is_dir():
            raise MigmError(f"--model-code {code} is not a folder; pass Lumina-DiMOO's model/ package folder")
        module = import_code_package(code)
        found = next((getattr(module, n) for n in names if hasattr(module, n)), None)
        if found is None:
            raise MigmError(f"--model-code {code} exports none of {', '.join(names)}; pass Lumina-DiMOO's model/ folder")
        return found
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    auto_map = config.get("auto_map") or {}
    reference = next((auto_map[k] for k in ("AutoModelForCausalLM", "AutoModel") if k in auto_map), None)
    if reference is None:
        raise MigmError(f"{folder} ships .py files but its config.json has no auto_map naming the model class; "
                        "name the code with --model-code DIR")
    try:
        return get_class_from_dynamic_module(reference, str(folder))
    except (OSError, ImportError, AttributeError, ValueError) as exc:
        raise MigmError(f"cannot import the model code of {folder}: {str(exc).splitlines()[0]}") from None


def compatible(cls: type) -> type:
    """``cls`` as transformers 4.46 to 5.x load it (the compatibility step of the module docstring)."""
    if getattr(cls, "_migm_compatible", False):
        return cls
    published_tie = cls.tie_weights
    takes_arguments = len(inspect.signature(published_tie).parameters) > 1
    # transformers 5 needs post_init for loading; 4.x loads without it (and is left as it was)
    needs_post_init = transformers_release() >= (5,)

    def __init__(self, config, *args, **kwargs):
        cls.__init__(self, config, *args, **kwargs)
        if needs_post_init and not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    def tie_weights(self, *args, **kwargs):
        return published_tie(self, *args, **kwargs) if takes_arguments else published_tie(self)

    return type(cls.__name__, (cls,), {"__init__": __init__, "tie_weights": tie_weights, "_migm_compatible": True,
                                       "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def transformers_release() -> tuple[int, ...]:
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).release


def dtype_keyword() -> str:
    """``from_pretrained``'s dtype argument: transformers renamed ``torch_dtype`` to ``dtype`` in 4.56."""
    return "dtype" if transformers_release() >= (4, 56) else "torch_dtype"


def load_config(folder: Path, cls: type):
    """The checkpoint's config, read with the model class's own config class."""
    try:
        return cls.config_class.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise MigmError(f"cannot read the config of {folder}: {str(exc).splitlines()[0]}") from None


def load_weights(folder: Path, cls: type, dtype: torch.dtype, device: torch.device):
    """The model with the folder's weights, in ``dtype``, on ``device`` (low-memory loading)."""
    from transformers.utils import logging as hf_logging

    # low_cpu_mem_usage: 4.x builds the model on the meta device and fills it from the file (accelerate,
    # a dependency); 5.x always does and ignores the flag. device_map puts each tensor on the GPU as it loads.
    options = {dtype_keyword(): dtype, "low_cpu_mem_usage": True}
    if device.type != "cpu":
        options["device_map"] = {"": str(device)}
    hf_logging.disable_progress_bar()  # stderr stays for the one line a user error gets
    try:
        return compatible(cls).from_pretrained(str(folder), **options).eval()
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise MigmError(f"cannot load the model in {folder}: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.enable_progress_bar()
