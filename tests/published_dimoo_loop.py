"""A reference of MIGM-Shortcut's published DiMOO inference loop (``generators/image_generation_generator.py``
``generate_image_shortcut`` at 93349c4), written in our own words in its order of operations, at batch 1:

* the full steps are ``refresh_steps``: step 0, then ``max(prev + 1, round((left_timesteps + 1) *
  (k / (left_budget + 1))))`` for k = 1 .. B - 1;
* per step: keep ``floor(vq_len * cos(pi/2 (step + 1) / N))`` (at least 1) masked, none at the last step;
* a full step runs the model on the conditional sequence and on ``uncon_ids + x[code_start - 2:]``,
  keeping their ``ln_f`` features; a shortcut step advances both branches' features with the head,
  ``mask_ratio = unknown_cnt / vq_len`` (after the previous commit); the logits at the still-masked
  positions are the image-code slice of ``ff_out`` on the features (on a full step that is the model's
  own logits there, which the published loop slices from its full-vocabulary output);
* guidance ``(1 + cfg) cond - cfg uncond``; a token drawn at each masked position; its confidence
  from the untempered softmax; stay masked: the ``keep`` lowest ``log(p) + temperature * gumbel``;
* after the commit: the conditional new tokens are the whole prompt (positions ``< code_start - 2``)
  plus the image tokens just committed, the unconditional ones only those image tokens, at their
  positions in the unconditional sequence; both as the base's bare ``wte`` rows.

One substitution, so both loops can be driven by the same noise: the token is drawn by inverse CDF from
one uniform per position, and the ranking uses one Gumbel per position, both taken from the package's
``StepNoise`` stream of the sample's seed (the published loop draws Gumbel-max noise per code). Nothing
else is shared with the package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def refresh_steps(timesteps: int, budget: int) -> list[int]:
    steps, this = [0], 0
    left_budget, left_timesteps = budget - 1, timesteps - 1
    for k in range(1, left_budget + 1):
        this = max(this + 1, round((left_timesteps + 1) * (k / (left_budget + 1))))
        steps.append(this)
    return steps


@torch.no_grad()
def published_shortcut_loop(llada, head, prompt_ids: torch.Tensor, uncon_ids: torch.Tensor, code_start: int,
                            timesteps: int, cfg_scale: float, temperature: float, budget: int, noise, mask_id: int,
                            vocab_offset: int, codebook_size: int) -> torch.Tensor:
    """``prompt_ids`` (1, T): the conditional sequence, all image tokens masked; returns the final (1, T) ids."""
    x = prompt_ids.clone()
    inner = llada.model
    wte = inner.transformer.wte
    ff_out = inner.transformer.ff_out
    head_weight = ff_out.weight[vocab_offset: vocab_offset + codebook_size]
    vq_mask = x == mask_id
    unknown_cnt = vq_mask.sum(dim=1, keepdim=True)
    vq_len = unknown_cnt
    full = set(refresh_steps(timesteps, budget))
    cond_feat = uncond_feat = None
    cond_new_token = cond_new_token_mask = uncond_new_token = uncond_new_token_mask = None  # set after each commit
    for step in range(timesteps):
        if unknown_cnt.item() == 0:
            break
        if step < timesteps - 1:
            frac = torch.cos(0.5 * math.pi * torch.tensor([(step + 1) / timesteps]))
            keep_n = (vq_len.float() * frac).floor().clamp_min(1).long()
        else:
            keep_n = torch.zeros_like(unknown_cnt)
        uncond = torch.cat((uncon_ids, x[:, code_start - 2:]), dim=1)
        uncond_vq_mask = torch.cat((torch.zeros((1, uncon_ids.size(1)), dtype=torch.bool), vq_mask[:, code_start - 2:]), 1)
        if step in full:
            (_, cond_feat), (_, uncond_feat) = (inner(seq, ret_last_feat=True) for seq in (x, uncond))
        else:
            mask_ratio = torch.tensor([unknown_cnt.item() / vq_len.item()])
            cond_feat = head(cond_feat, cond_new_token, cond_new_token_mask, mask_ratio)
            uncond_feat = head(uncond_feat, uncond_new_token, uncond_new_token_mask, mask_ratio)
        cond_logits = F.linear(cond_feat[vq_mask].view(1, -1, cond_feat.shape[-1]), head_weight)
        uncond_logits = F.linear(uncond_feat[uncond_vq_mask].view(1, -1, uncond_feat.shape[-1]), head_weight)
        logits = (1 + cfg_scale) * cond_logits - cfg_scale * uncond_logits

        token_uniform, rank_gumbel = noise.step(step)
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
        sampled = torch.searchsorted(cdf, token_uniform[..., None] * cdf[..., -1:]).squeeze(-1).clamp(max=codebook_size - 1)
        probs = torch.softmax(logits, dim=-1)
        conf = probs.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)

        prev_x = x.clone()
        flat_idx = vq_mask.nonzero(as_tuple=False)[:, 1]
        x.view(-1)[flat_idx] = (sampled + vocab_offset).view(-1)
        confidence = torch.log(conf.clamp_min(1e-20)) + temperature * rank_gumbel
        stay = torch.zeros_like(confidence, dtype=torch.bool)
        if int(keep_n.max()) > 0:
            stay.scatter_(1, torch.topk(confidence, k=int(keep_n.max()), dim=-1, largest=False).indices, True)
        x.view(-1)[flat_idx[stay.view(-1)]] = mask_id
        vq_mask = x == mask_id
        unknown_cnt = vq_mask.sum(dim=1, keepdim=True)

        cond_new_token_mask = x != prev_x
        cond_new_token_mask[..., : code_start - 2] = True
        cond_new_token = wte(x[cond_new_token_mask].reshape(1, -1))
        uncond_new_token_mask = torch.cat((torch.zeros((1, uncon_ids.size(1)), dtype=torch.bool),
                                           cond_new_token_mask[:, code_start - 2:]), dim=1)
        uncond_new_token = cond_new_token[:, code_start - 2:]
    return x
