"""A stand-in for taming-transformers' VQGAN as MaskGIT-pytorch ships it (``Network/Taming``), written for
the tests: the same module names, nesting and forward rules (GroupNorm(32, eps 1e-6) + swish resnets with a
1x1 ``nin_shortcut``, single-head attention with 1x1-convolution q/k/v/proj_out, (0, 1, 0, 1)-padded stride-2
downsampling, nearest upsampling, ``up`` indexed by resolution level, a codebook in ``quantize.embedding``)
and a Lightning-style ``last.ckpt`` + ``model.yaml`` writer. Nothing in the package imports it."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn


def norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.dropout, self.conv2 = norm(cout), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb):  # taming's signature; its VQGAN has no timestep (temb is None, no temb_proj)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.norm = norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q, k, v = (layer(h).reshape(b, c, hh * ww) for layer in (self.q, self.k, self.v))
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=2)  # (b, query, key)
        return x + self.proj_out(torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(c: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(c, c), AttnBlock(c), ResnetBlock(c, c)
    return mid


def _level(cin: int, cout: int, blocks: int, attention: bool) -> nn.Module:
    """One resolution level: ``block`` (resnets) each followed by its ``attn`` entry where the level has attention."""
    level = nn.Module()
    level.block = nn.ModuleList(ResnetBlock(cin if j == 0 else cout, cout) for j in range(blocks))
    level.attn = nn.ModuleList(AttnBlock(cout) for _ in range(blocks if attention else 0))
    return level


def _run_level(level: nn.Module, h):
    for j, block in enumerate(level.block):
        h = block(h, None)
        if len(level.attn):
            h = level.attn[j](h)
    return h


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels, **_):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down, res, cin = nn.ModuleList(), resolution, ch
        for i, m in enumerate(ch_mult):
            level, cin = _level(cin, ch * m, num_res_blocks, res in attn_resolutions), ch * m
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(cin)
                res //= 2
            self.down.append(level)
        self.mid, self.norm_out, self.conv_out = _mid(cin), norm(cin), nn.Conv2d(cin, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, None)), None)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, **_):
        super().__init__()
        cin, res = ch * ch_mult[-1], resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in, self.mid = nn.Conv2d(z_channels, cin, 3, 1, 1), _mid(cin)
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch_mult))):
            level, cin = _level(cin, ch * ch_mult[i], num_res_blocks + 1, res in attn_resolutions), ch * ch_mult[i]
            if i != 0:
                level.upsample = Upsample(cin)
                res *= 2
            self.up.insert(0, level)  # up[i] is resolution level i, as in taming
        self.norm_out, self.conv_out = norm(cin), nn.Conv2d(cin, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z), None)), None)
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_e: int, e_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_e, e_dim)

    def forward(self, z):
        """taming's return shape: (quantised z, loss, (perplexity, one-hot encodings, indices)); the loss
        and the middle two are not used by any loader, so they are None here."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        dist = flat.pow(2).sum(1, keepdim=True) + self.embedding.weight.pow(2).sum(1) - 2 * flat @ self.embedding.weight.T
        indices = dist.argmin(1)
        quant = self.get_codebook_entry(indices, (z.shape[0], z.shape[2], z.shape[3], z.shape[1]))
        return quant, None, (None, None, indices)

    def get_codebook_entry(self, indices, shape):
        return self.embedding(indices).view(shape).permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, **_):
        super().__init__()
        self.embed_dim = embed_dim
        self.encoder, self.decoder = Encoder(**ddconfig), Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x):
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, quant):
        return self.decoder(self.post_quant_conv(quant))

    def decode_code(self, code_b):
        quant = self.quantize.get_codebook_entry(code_b.view(-1), (-1, code_b.size(1), code_b.size(2), self.embed_dim))
        return self.decode(quant)


TINY_PARAMS = {"embed_dim": 4, "n_embed": 16, "ddconfig": {
    "double_z": False, "z_channels": 8, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32, "ch_mult": [1, 2],
    "num_res_blocks": 1, "attn_resolutions": [8], "dropout": 0.0}}


def lightning_records() -> dict:
    """What a PyTorch Lightning 1.0 trainer pickles beside the weights: its ModelCheckpoint callback's
    state keyed by the callback *class*, an AttributeDict of hyper-parameters, the optimizer states.
    The classes live in a ``pytorch_lightning`` module made for the save only and removed after, so
    the file names classes of a library that is not installed, as the released file does here."""
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint",
             "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing")
    modules = {name: types.ModuleType(name) for name in names}
    checkpoint_cls = type("ModelCheckpoint", (), {"__module__": names[2]})
    attribute_dict = type("AttributeDict", (dict,), {"__module__": names[4]})
    modules[names[2]].ModelCheckpoint, modules[names[4]].AttributeDict = checkpoint_cls, attribute_dict
    return {"modules": modules, "records": {
        "callbacks": {checkpoint_cls: {"best_model_score": torch.tensor(0.5), "best_model_path": "logs/last.ckpt"}},
        "hyper_parameters": attribute_dict(embed_dim=4, n_embed=16), "optimizer_states": [{"state": {}, "param_groups": []}],
        "lr_schedulers": []}}


def write_taming_vqgan(folder: Path, seed: int = 0, extra: dict | None = None, lightning: bool = True) -> VQModel:
    """A random tiny VQGAN saved as MaskGIT-pytorch releases one: ``model.yaml`` + a Lightning ``last.ckpt``
    (with a ``loss.`` tensor of the training loss, which loaders skip, and with ``lightning`` Lightning's
    own pickled objects). Returns the stand-in module."""
    torch.manual_seed(seed)
    model = VQModel(**TINY_PARAMS).eval()
    for p in model.parameters():  # GroupNorm starts at identity; random affine makes the check meaningful
        nn.init.normal_(p, std=0.2)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": {"base_learning_rate": 4.5e-6, "target": "taming.models.vqgan.VQModel",
                        "params": {**TINY_PARAMS, "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"}}}}
    (folder / "model.yaml").write_text(yaml.safe_dump(config))
    state = {**model.state_dict(), "loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4)}
    saved = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8", "state_dict": state, **(extra or {})}
    fake = lightning_records() if lightning else {"modules": {}, "records": {}}
    sys.modules.update(fake["modules"])
    try:
        torch.save({**saved, **fake["records"]}, folder / "last.ckpt")
    finally:
        for name in fake["modules"]:
            sys.modules.pop(name, None)
    return model
