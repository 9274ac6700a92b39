"""A reference of MIGM-Shortcut's published MaskGIT inference loop (``MaskGIT-Shortcut/Trainer/vit.py``
``sample_shortcut`` at 93349c4), written in our own words in its order of operations, for one sample:

* the full steps are ``refresh_steps`` (the same rule as the DiMOO fork's);
* the schedule is ``adap_sche``: over ``r = linspace(1, 0, N)``, ``arccos(r) / (pi/2)`` normalised to the
  token count, rounded, at least 1, the last step taking the rest; a step never predicts more than is masked;
* a full step runs the transformer on ``[code, code]`` with the labels kept, then dropped, keeping its last
  features (class-token row included); a shortcut step advances those features with the head, both rows
  given the same new tokens (the codes committed at the previous step, their map over the image positions
  with a False class-token column appended) and ``mask_ratio = mask.mean()`` (after that commit); its
  logits are ``feat @ tok_emb.weight.T + bias`` cut to the image rows and the codebook;
* guidance ``(1 + w k/(N-1)) cond - w k/(N-1) uncond``; ``prob = softmax(logit * sm_temp)``; a code drawn
  at each position; ``conf = log prob(code) + r_temp * gumbel * (1 - k/(N-1))``, ``-inf`` where already
  committed; the ``t`` most confident are committed.

One substitution, so both loops can be driven by the same noise: the code is drawn by inverse CDF from one
uniform per masked position, and the ranking uses one Gumbel per masked position, both from the package's
``StepNoise`` stream of the sample's seed (the published loop draws from ``Categorical`` and numpy).
"""

from __future__ import annotations

import math

import torch


def adap_sche(step: int, num_tokens: int) -> list[int]:
    r = torch.linspace(1, 0, step)
    val = torch.arccos(r) / (math.pi * 0.5)
    sche = ((val / val.sum()) * num_tokens).round()
    sche[sche == 0] = 1
    sche[-1] += num_tokens - sche.sum()
    return [int(t) for t in sche.int()]


def refresh_steps(step: int, budget: int) -> set[int]:
    steps, this = {0}, 0
    for k in range(1, budget):
        this = max(this + 1, round(step * (k / budget)))
        steps.add(this)
    return steps


@torch.no_grad()
def published_maskgit_loop(vit, head, label: int, step: int, budget: int, w: float, sm_temp: float, r_temp: float,
                           noise) -> torch.Tensor:
    """Final codes (patch x patch) of one sample of class ``label``."""
    g, k = vit.patch_size, vit.codebook_size
    code = torch.full((1, g, g), k)  # MaskGIT's mask value: the id after the codebook
    mask = torch.ones(1, g * g)
    labels = torch.tensor([label, label])
    drop = torch.ones(1, dtype=torch.bool)
    scheduler = adap_sche(step, g * g)
    full = refresh_steps(step, budget)
    feat = new_ids = new_map = None
    for indice, t in enumerate(scheduler):
        if mask.sum() < t:
            t = int(mask.sum().item())
        if mask.sum() == 0:
            break
        if indice in full:
            logit, feat = vit(torch.cat([code.clone(), code.clone()]), labels, torch.cat([~drop, drop]), ret_last_feat=True)
        else:
            ids = new_ids.repeat(2, 1)
            token_map = torch.cat([new_map, torch.zeros((1, 1), dtype=torch.bool)], dim=-1).repeat(2, 1)
            feat = head(feat, ids, token_map, mask.float().mean().unsqueeze(0).expand(2))
            logit = (torch.matmul(feat, vit.tok_emb.weight.T) + vit.bias)[:, : g * g, :k]
        logit_c, logit_u = torch.chunk(logit, 2, dim=0)
        _w = w * (indice / (len(scheduler) - 1))
        logit = (1 + _w) * logit_c - _w * logit_u
        prob = torch.softmax(logit * sm_temp, -1)[0]  # (g*g, K)

        masked = mask[0].bool().nonzero()[:, 0]  # image order
        token_uniform, rank_gumbel = noise.step(indice)
        cdf = prob[masked].cumsum(-1)
        drawn = torch.searchsorted(cdf, token_uniform[0, :, None] * cdf[:, -1:]).squeeze(-1).clamp(max=k - 1)
        pred_code = torch.zeros(g * g, dtype=torch.long)
        pred_code[masked] = drawn
        conf = torch.full((g * g,), -math.inf)
        ratio = indice / (len(scheduler) - 1)
        conf[masked] = torch.log(prob[masked, drawn]) + r_temp * rank_gumbel[0] * (1 - ratio)
        chosen = torch.topk(conf, k=t).indices
        f_mask = torch.zeros(g * g, dtype=torch.bool)
        f_mask[chosen] = True
        code.view(-1)[f_mask] = pred_code[f_mask]
        new_ids, new_map = code.view(-1)[f_mask][None], f_mask[None]
        mask[0, chosen] = 0
    return code[0]
