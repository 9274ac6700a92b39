"""A reference of the Inception Score in MaskGIT's published evaluation (MIGM-Shortcut's
``MaskGIT-Shortcut/Metrics/inception_metrics.py`` at 93349c4, ``inception_score``), written in our own
words with numpy: shuffle the logits, softmax, split into parts in that order (torch's ``chunk``), and average over the parts
exp(mean over the part of KL(p(y|x) || mean p(y) of the part)). The published code draws its shuffle from
the global RNG; here it is an argument, so the comparison is exact."""

import numpy as np


def published_inception_score(logits, order, parts=10):
    logits = np.asarray(logits, dtype=np.float64)[order]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    prob = np.exp(log_prob)
    scores = []
    size = -(-len(logits) // parts)  # torch's chunk: parts of ceil(n / parts), the last one shorter (or fewer parts)
    cuts = range(size, len(logits), size)
    for p, log_p in zip(np.split(prob, cuts), np.split(log_prob, cuts)):
        mean = p.mean(axis=0, keepdims=True)
        scores.append(np.exp((p * (log_p - np.log(mean))).sum(axis=1).mean()))
    return float(np.mean(scores))
