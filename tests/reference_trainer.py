"""A PyTorch transcription of the reference trainer's loss, for parity.

Written from the paper digest's description of `_compute_loss_and_backward`
(fp32 log-softmax of the shifted logits, gather at the label, objective by
`objective_trans` key, thresholds overwrite the loss mask, and the loss is
Σ(loss·mask) / (Σ mask + 1e-8) per micro-batch).
"""

import torch


def reference_loss(logits, labels, loss_mask, objective_trans: str):
    """Returns the micro-batch loss exactly as the reference computes it."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_p_true = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    p = torch.exp(log_p_true)
    mask = loss_mask.float()

    key = objective_trans
    if key == "original":
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            reduction="none",
        ).reshape(labels.shape)
    elif key == "logp":
        loss = -log_p_true
    elif key == "p":
        loss = 1 - p
    elif key.startswith("GeneralFamily-"):
        alpha = float(key.split("-")[1])
        loss = -(torch.exp(alpha * log_p_true) - 1) / alpha
    elif key.startswith("OnlyTopP-"):
        mask = mask * (p >= float(key.split("-")[1])).float()
        loss = 1 - p
    elif key.startswith("OnlyBottomP-"):
        mask = mask * (p <= float(key.split("-")[1])).float()
        loss = 1 - p
    elif key.startswith("OnlyTopLogP-"):
        mask = mask * (p >= float(key.split("-")[1])).float()
        loss = -log_p_true
    elif key.startswith("OnlyBottomLogP-"):
        mask = mask * (p <= float(key.split("-")[1])).float()
        loss = -log_p_true
    else:
        raise KeyError(key)
    return (loss * mask).sum() / (mask.sum() + 1e-8)
