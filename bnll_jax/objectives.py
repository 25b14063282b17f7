"""Probability-based SFT objectives f(p) of the target token's probability.

Every objective is a function of `logp = log p_θ(y_t | y_<t, x)`, the
log-probability of the target token, computed in fp32. Working from log p
rather than p keeps each loss exact where it matters: the power family
(1 - p^a)/a = -expm1(a·logp)/a is exact for a = 1e-6 and for a = 10, and
log(1 - p) = log(-expm1(logp)) stays finite as p -> 1.

Gradient shape (the paper's Lemma 3.1). For a token with logits z and
softmax probabilities π, d f(p_y)/d z_i = f'(p)·p·(δ_iy - π_i), so every
objective scales the cross-entropy gradient (π - onehot) by one per-token
factor

    w(p) = -p·f'(p)          (`ce_scale`; w = 1 for NLL)

and the weight on the correct logit is

    W(p) = w(p)·(1 - p)      (`gradient_weight`; W = 1 - p for NLL).

Objectives whose W peaks at p >= 1/2 (concave f) lean on the model's prior;
those peaking below 1/2 (convex f) are prior-averse (Proposition 3.2).

Thresholded objectives multiply f by an indicator 1{p >= q} or 1{p <= q}
evaluated on the *current* model's p with no gradient through it. The batch
loss is

    L = Σ_t kept_t·f(p_t) / Σ_t kept_t,
    kept_t = response_mask_t AND indicator_t,

so the denominator counts only tokens that pass the threshold: exactly what
the reference trainer computes per micro-batch.

Spec grammar accepted by `parse` (case-insensitive):

    nll | logp | original          -log p
    p                              1 - p
    power:<a>                      (1 - p^a)/a, any real a (a = 0 is NLL)
    log1m_p                        log(1 - p), the most prior-leaning
    dft                            -stopgrad(p)·log p
    focal:<g>                      -(1 - p)^g·log p, g >= 0
    huber:<d>                      Huber loss on e = 1 - p, 0 < d <= 1
    top_<base>:<q>                 <base>·1{p >= q}, 0 <= q < 1
    bottom_<base>:<q>              <base>·1{p <= q}, 0 < q <= 1
        where <base> is logp (or nll), p or log1m_p

and the reference trainer's keys: original, logp, p, GeneralFamily-<a>,
OnlyTopP-<q>, OnlyBottomP-<q>, OnlyTopLogP-<q>, OnlyBottomLogP-<q>.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

# Smallest positive fp32 number: 1 - p is clamped here only where p rounds
# to exactly 1, so that log(1 - p) and (1 - p)^g stay finite there.
_TINY = float(jnp.finfo(jnp.float32).tiny)


def _one_minus_p(logp: Array) -> Array:
    # -expm1(log p) is exact for p near 1, where 1 - exp(log p) cancels.
    return -jnp.expm1(logp)


# Per-kind formulas, each a function of (logp, param): the loss f and the
# closed-form cross-entropy scale w = -p·f'(p). The closed forms are checked
# against jax.grad in the tests.
def _nll(logp, _):
    return -logp


def _nll_w(logp, _):
    return jnp.ones_like(logp)


def _p(logp, _):
    return _one_minus_p(logp)


def _p_w(logp, _):
    return jnp.exp(logp)


def _power(logp, a):
    if a == 0.0:
        return -logp
    return -jnp.expm1(a * logp) / a


def _power_w(logp, a):
    # f'(p) = -p^(a-1), so w = p^a.
    return jnp.exp(a * logp)


def _log1m_p(logp, _):
    return jnp.log(jnp.maximum(_one_minus_p(logp), _TINY))


def _log1m_p_w(logp, _):
    # f'(p) = -1/(1 - p), so w = p/(1 - p) and W = p.
    return jnp.exp(logp) / jnp.maximum(_one_minus_p(logp), _TINY)


def _dft(logp, _):
    return -jax.lax.stop_gradient(jnp.exp(logp)) * logp


def _focal(logp, g):
    return -(jnp.maximum(_one_minus_p(logp), _TINY) ** g) * logp


def _focal_w(logp, g):
    # w = (1-p)^g - g·p·(1-p)^(g-1)·log p; written with (1-p)^g/(1-p) so
    # that g < 1 does not raise 0 to a negative power.
    one_minus_p = jnp.maximum(_one_minus_p(logp), _TINY)
    decay = one_minus_p**g
    return decay - g * jnp.exp(logp) * decay / one_minus_p * logp


def _huber(logp, d):
    e = _one_minus_p(logp)
    return jnp.where(e <= d, 0.5 * e * e, d * (e - 0.5 * d))


def _huber_w(logp, d):
    e = _one_minus_p(logp)
    return jnp.exp(logp) * jnp.minimum(e, d)


_FORMULAS: dict[str, tuple[Callable, Callable]] = {
    "nll": (_nll, _nll_w),
    "p": (_p, _p_w),
    "power": (_power, _power_w),
    "log1m_p": (_log1m_p, _log1m_p_w),
    "dft": (_dft, _p_w),
    "focal": (_focal, _focal_w),
    "huber": (_huber, _huber_w),
}


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective f(p), optionally restricted to p >= q or p <= q.

    Hashable and comparable by value, so it can be a static argument of
    `jax.jit` and two parses of one spec share a compilation.
    """

    kind: str
    param: float = 0.0
    threshold: str | None = None  # "top" (p >= q) or "bottom" (p <= q)
    q: float = 0.0

    @property
    def spec(self) -> str:
        """The canonical spec string; `parse(obj.spec) == obj`."""
        base = {"nll": "logp"}.get(self.kind, self.kind)
        if self.kind in ("power", "focal", "huber"):
            base = f"{self.kind}:{self.param:g}"
        if self.threshold is None:
            return "nll" if self.kind == "nll" else base
        return f"{self.threshold}_{base}:{self.q:g}"

    def __str__(self) -> str:
        return self.spec

    @property
    def masks_tokens(self) -> bool:
        """Whether the objective drops tokens through a threshold."""
        return self.threshold is not None

    def per_token_loss(self, logp: Array) -> Array:
        """f(p) per token, before the threshold indicator."""
        return _FORMULAS[self.kind][0](logp, self.param)

    def keep(self, logp: Array) -> Array:
        """Threshold indicator on the current p; no gradient flows here."""
        p = jax.lax.stop_gradient(jnp.exp(logp))
        if self.threshold == "top":
            return p >= self.q
        if self.threshold == "bottom":
            return p <= self.q
        return jnp.ones(logp.shape, bool)

    def token_loss(self, logp: Array) -> Array:
        """f(p)·1{kept} per token: the objective a single token sees."""
        kept = self.keep(logp)
        # Evaluate f only where kept, so a dropped token's extreme logp
        # cannot leak a NaN into the gradient through jnp.where.
        safe_logp = jnp.where(kept, logp, -1.0)
        return jnp.where(kept, self.per_token_loss(safe_logp), 0.0)

    def ce_scale(self, p: Array) -> Array:
        """w(p) = -p·f'(p): the factor on the cross-entropy gradient.

        Includes the threshold indicator (w = 0 on dropped tokens).
        """
        logp = jnp.log(jnp.asarray(p, jnp.float32))
        w = _FORMULAS[self.kind][1](logp, self.param)
        return jnp.where(self.keep(logp), w, 0.0)

    def gradient_weight(self, p: Array) -> Array:
        """W(p) = -f'(p)·p·(1 - p): gradient weight on the correct logit."""
        p = jnp.asarray(p, jnp.float32)
        return self.ce_scale(p) * _one_minus_p(jnp.log(p))


_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_BASES = {"logp": "nll", "nll": "nll", "p": "p", "log1m_p": "log1m_p"}
_REFERENCE_THRESHOLDS = {
    "onlytopp": ("top", "p"),
    "onlybottomp": ("bottom", "p"),
    "onlytoplogp": ("top", "nll"),
    "onlybottomlogp": ("bottom", "nll"),
}

VALID_FORMS = (
    "nll, logp, original, p, power:<a>, log1m_p, dft, focal:<g>, "
    "huber:<d>, top_<base>:<q>, bottom_<base>:<q> (base: logp, p, "
    "log1m_p), GeneralFamily-<a>, OnlyTopP-<q>, OnlyBottomP-<q>, "
    "OnlyTopLogP-<q>, OnlyBottomLogP-<q>"
)


def _error(spec: str, why: str) -> ValueError:
    return ValueError(f"objective {spec!r}: {why}; valid forms: {VALID_FORMS}")


def _number(spec: str, text: str) -> float:
    if not re.fullmatch(_NUMBER, text):
        raise _error(spec, f"{text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _error(spec, f"{text!r} is not finite")
    return value


def _thresholded(spec: str, side: str, kind: str, q: float) -> Objective:
    if side == "top" and not 0.0 <= q < 1.0:
        raise _error(spec, f"a top threshold needs 0 <= q < 1, got {q:g}")
    if side == "bottom" and not 0.0 < q <= 1.0:
        raise _error(spec, f"a bottom threshold needs 0 < q <= 1, got {q:g}")
    return Objective(kind, threshold=side, q=q)


def _parse_reference(spec: str, name: str, value: str) -> Objective:
    if name == "generalfamily":
        a = _number(spec, value)
        if a == 0.0:
            raise _error(spec, "GeneralFamily-0 divides by zero; use logp")
        return Objective("power", a)
    if name in _REFERENCE_THRESHOLDS:
        side, kind = _REFERENCE_THRESHOLDS[name]
        return _thresholded(spec, side, kind, _number(spec, value))
    raise _error(spec, f"unknown reference key {name!r}")


def parse(spec: str) -> Objective:
    """Returns the objective named by `spec` (see the module docstring).

    Raises:
        ValueError: for an unknown name, a malformed number, or a threshold
            or parameter outside its range; the message lists valid forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _error(str(spec), "empty objective")
    text = spec.strip()
    lower = text.lower()

    if lower in ("nll", "logp", "original"):
        return Objective("nll")
    if lower in ("p", "log1m_p", "dft"):
        return Objective(lower)

    reference = re.fullmatch(r"([a-z]+)-(.*)", lower)
    if reference:
        return _parse_reference(spec, *reference.groups())

    name, sep, value = lower.partition(":")
    if not sep:
        raise _error(spec, f"unknown objective {name!r}")
    number = _number(spec, value)
    if name == "power":
        return Objective("power", number)
    if name == "focal":
        if number < 0:
            raise _error(spec, f"focal needs g >= 0, got {number:g}")
        return Objective("focal", number)
    if name == "huber":
        if not 0.0 < number <= 1.0:
            raise _error(spec, f"huber needs 0 < d <= 1, got {number:g}")
        return Objective("huber", number)
    side, _, base = name.partition("_")
    if side in ("top", "bottom") and base in _BASES:
        return _thresholded(spec, side, _BASES[base], number)
    raise _error(spec, f"unknown objective {name!r}")
