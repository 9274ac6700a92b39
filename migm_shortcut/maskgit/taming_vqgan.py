"""The taming-transformers VQGAN that MaskGIT-pytorch releases (``VQGAN/last.ckpt`` + ``VQGAN/model.yaml``),
converted on load into a diffusers ``VQModel`` with the same weights and the same outputs.

The two code bases build the same network under different names: taming's ``Encoder``/``Decoder``
(``down[i].block[j]``, ``down[i].attn[j]`` with 1x1-convolution q/k/v, ``mid.block_1``/``attn_1``/
``block_2``, ``up[i]`` indexed by resolution level) against diffusers' ``down_blocks``/``up_blocks``
(``resnets``, ``attentions`` with linear ``to_q``/``to_k``/``to_v``, ``mid_block``, up blocks in the
order they run). Which levels carry attention follows from ``attn_resolutions``; the converter maps
every tensor by name, reshapes the attention convolutions to linear weights and refuses anything it
does not map (naming the first such tensor), so a checkpoint of another layout fails in one line.

The checkpoint is a PyTorch Lightning 1.0 file that also pickles Lightning's callbacks and
hyper-parameters. Its tensors are read without Lightning and without running code from the file
(``io.load_tensor_records``: only the globals torch's ``weights_only`` loader allows are resolved,
every other object becomes an inert placeholder), so neither Lightning nor ``trust_remote_code`` is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from migm_shortcut.errors import MigmError
from migm_shortcut.io import load_tensor_records

REQUIRED_DD = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "in_channels", "out_ch", "resolution", "z_channels")


def read_taming_config(path: Path) -> dict:
    """``model.params`` of a taming ``model.yaml`` (ddconfig, n_embed, embed_dim), checked."""
    import yaml

    if not path.is_file():
        raise MigmError(f"{path} not found: a taming VQGAN folder holds model.yaml next to last.ckpt")
    try:
        params = yaml.safe_load(path.read_text())["model"]["params"]
        dd = params["ddconfig"]
        missing = [k for k in ("n_embed", "embed_dim") if k not in params] + [k for k in REQUIRED_DD if k not in dd]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise MigmError(f"{path} is not a taming VQGAN config (model.params.ddconfig expected; {type(exc).__name__})") from None
    if missing:
        raise MigmError(f"{path}: model.params lacks {missing[0]!r}")
    if dd.get("double_z"):
        raise MigmError(f"{path}: double_z is set (a KL autoencoder's encoder), not a VQGAN")
    return params


def _attention_levels(dd: dict) -> list[bool]:
    return [dd["resolution"] // 2**i in dd["attn_resolutions"] for i in range(len(dd["ch_mult"]))]


def vqmodel_config(params: dict) -> dict:
    """The diffusers ``VQModel`` configuration of the same network."""
    dd = params["ddconfig"]
    attn = _attention_levels(dd)
    return dict(
        in_channels=dd["in_channels"], out_channels=dd["out_ch"], act_fn="silu", norm_num_groups=32,
        down_block_types=["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn],
        up_block_types=["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn)],
        block_out_channels=[dd["ch"] * m for m in dd["ch_mult"]], layers_per_block=dd["num_res_blocks"],
        latent_channels=dd["z_channels"], sample_size=dd["resolution"], num_vq_embeddings=params["n_embed"],
        vq_embed_dim=params["embed_dim"], lookup_from_codebook=False, mid_block_add_attention=True,
    )


_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_MID = {"block_1": "resnets.0", "block_2": "resnets.1", "attn_1": "attentions.0"}


def diffusers_key(key: str, levels: int) -> str | None:
    """taming name -> diffusers name (None: not part of the network, e.g. the training loss)."""
    if key.startswith("loss."):
        return None
    if re.fullmatch(r"(quantize\.embedding|quant_conv|post_quant_conv)\.\w+", key):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if not m:
        return key  # unknown: reported as unexpected by the caller
    part, rest = m.groups()
    rest = re.sub(r"^norm_out\.", "conv_norm_out.", rest)
    m = re.fullmatch(r"(down|up)\.(\d+)\.(block|attn|downsample|upsample)\.(.+)", rest)
    if m:
        kind, level, sub, tail = m.groups()
        index = int(level) if kind == "down" else levels - 1 - int(level)  # taming indexes up blocks by resolution
        blocks = f"{kind}_blocks.{index}"
        if sub in ("downsample", "upsample"):
            return f"{part}.{blocks}.{sub}rs.0.{tail}"
        j, layer, leaf = tail.split(".", 2)
        names = _RESNET if sub == "block" else _ATTN
        return f"{part}.{blocks}.{'resnets' if sub == 'block' else 'attentions'}.{j}.{names.get(layer, layer)}.{leaf}"
    m = re.fullmatch(r"mid\.(block_1|block_2|attn_1)\.(\w+)\.(\w+)", rest)
    if m:
        block, layer, leaf = m.groups()
        names = _ATTN if block == "attn_1" else _RESNET
        return f"{part}.mid_block.{_MID[block]}.{names.get(layer, layer)}.{leaf}"
    return f"{part}.{rest}"


def convert_state_dict(state: dict[str, torch.Tensor], params: dict, target: dict[str, torch.Tensor], where) -> dict:
    levels = len(params["ddconfig"]["ch_mult"])
    out = {}
    for key, value in state.items():
        new = diffusers_key(key, levels)
        if new is None:
            continue
        if new not in target:
            raise MigmError(f"{where}: tensor {key!r} has no place in the VQGAN that model.yaml describes")
        if ".attentions." in new and value.ndim == 4:  # 1x1 convolution -> linear
            value = value[:, :, 0, 0]
        if value.shape != target[new].shape:
            raise MigmError(f"{where}: {key} has shape {tuple(value.shape)}, model.yaml implies {tuple(target[new].shape)}")
        out[new] = value
    missing = [k for k in target if k not in out]
    if missing:
        raise MigmError(f"{where}: the checkpoint lacks the VQGAN tensor for {missing[0]!r}")
    return out


def load_taming_vqgan(folder: str | Path, device="cpu", trust_remote_code: bool = False):
    """``folder/model.yaml`` + ``folder/last.ckpt`` (or another single .ckpt) -> diffusers ``VQModel``."""
    from diffusers import VQModel

    folder = Path(folder)
    params = read_taming_config(folder / "model.yaml")
    ckpts = [folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else sorted(folder.glob("*.ckpt"))
    if not ckpts:
        raise MigmError(f"{folder} holds no .ckpt file (MaskGIT-pytorch releases VQGAN/last.ckpt)")
    # The released file is a PyTorch Lightning checkpoint: besides the weights it pickles Lightning's
    # callbacks and hyper-parameters. Only its tensors are needed, so they are read without Lightning
    # and without running anything from the file, trusted or not.
    checkpoint = load_tensor_records(ckpts[0])
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MigmError(f"{ckpts[0]} is not a VQGAN checkpoint (expected a dict with a state_dict of tensors)")
    model = VQModel(**vqmodel_config(params))
    model.load_state_dict(convert_state_dict(state, params, model.state_dict(), ckpts[0]))
    return model.float().to(device).eval()
