"""Gradient flow at t = 0: which objective raises accuracy fastest.

A small simulation of the paper's Theorem 6.4 setting. Each context x has
its own free logits z_x (the theorem's preconditioned features make the
logits of different contexts independent), a true token y*, and a training
label ỹ that is y* with probability 1 - E and otherwise uniform over the
other V - 1 tokens (label noise E). Gradient flow on L_f moves the logits
along ż = -∇_z f(p_ỹ), so the population accuracy A = E_x[p_θ(y* | x)]
(minus the paper's risk R) changes at rate

    dA/dt = -E_x E_ỹ < ∇_z p_y*, ∇_z f(p_ỹ) >,

computed here with jax.grad, exactly in expectation over ỹ.

Two bases: model-weak (MW: a uniform model, the theorem's assumption
6.1) and model-strong (MS: the true token leads by a margin, so that the
share K of contexts with p_y* + p_ỹ >= 0.55 is about 0.8). The theorem
predicts that NLL raises accuracy faster in MW, while a prior-leaning
objective such as 1 - p does in MS once labels are noisy.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bnll_jax.objectives import Objective


@dataclasses.dataclass(frozen=True)
class Base:
    """A population of contexts: logits [N, V] and true tokens [N]."""

    name: str
    logits: jax.Array
    true_tokens: jax.Array

    @property
    def mean_true_prob(self) -> float:
        probs = jax.nn.softmax(self.logits)
        return float(jnp.mean(_pick(probs, self.true_tokens)))

    def strong_share(self, noise: float) -> float:
        """Expected share of contexts with p_y* + p_ỹ >= 0.55 (the K)."""
        probs = jax.nn.softmax(self.logits)
        p_true = _pick(probs, self.true_tokens)[:, None]
        pair = jnp.where(
            jax.nn.one_hot(self.true_tokens, probs.shape[1], dtype=bool),
            (1 - noise) * (2 * p_true >= 0.55),
            noise / (probs.shape[1] - 1) * (p_true + probs >= 0.55),
        )
        return float(jnp.mean(jnp.sum(pair, axis=1)))


def _pick(values, index):
    return jnp.take_along_axis(values, index[:, None], axis=1)[:, 0]


def model_weak(contexts: int, vocab: int, seed: int = 0) -> Base:
    """The uniform base of Assumption 6.1 (MW)."""
    key = jax.random.PRNGKey(seed)
    true_tokens = jax.random.randint(key, (contexts,), 0, vocab)
    return Base("model-weak", jnp.zeros((contexts, vocab)), true_tokens)


def model_strong(
    contexts: int, vocab: int, margin: float = 5.5, seed: int = 0
) -> Base:
    """A base whose true token leads by ~`margin` nats (MS)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    logits = jax.random.normal(keys[0], (contexts, vocab))
    true_tokens = jax.random.randint(keys[1], (contexts,), 0, vocab)
    lead = margin + jax.random.normal(keys[2], (contexts,))
    logits = logits.at[jnp.arange(contexts), true_tokens].add(lead)
    return Base("model-strong", logits, true_tokens)


def accuracy_rate(base: Base, objective: Objective, noise: float) -> float:
    """dA/dt at t = 0 under gradient flow on `objective` with noise E."""
    rates = _rate_fn(objective)(
        base.logits, base.true_tokens, jnp.float32(noise)
    )
    return float(jnp.mean(rates))


@functools.cache
def _rate_fn(objective: Objective):
    # One compilation per objective; the noise rate is a traced argument.
    def token_loss(z, label):
        return objective.token_loss(jax.nn.log_softmax(z)[label])

    def true_prob(z, true_token):
        return jax.nn.softmax(z)[true_token]

    def rate(z, true_token, noise):
        vocab = z.shape[0]
        grad_accuracy = jax.grad(true_prob)(z, true_token)
        labels = jnp.arange(vocab)
        grad_loss = jax.vmap(jax.grad(token_loss), (None, 0))(z, labels)
        # Probability of each training label given the true token.
        label_prob = jnp.where(
            labels == true_token, 1.0 - noise, noise / (vocab - 1)
        )
        return -jnp.sum(label_prob * (grad_loss @ grad_accuracy))

    return jax.jit(jax.vmap(rate, (0, 0, None)))


@dataclasses.dataclass(frozen=True)
class FlowResult:
    base: str
    noise: float
    mean_true_prob: float
    strong_share: float
    rates: dict[str, float]

    @property
    def fastest(self) -> str:
        return max(self.rates, key=self.rates.get)


def simulate(
    objectives: list[Objective],
    noises: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3),
    contexts: int = 2000,
    vocab: int = 32,
    seed: int = 0,
) -> list[FlowResult]:
    """dA/dt for each objective on both bases at each noise rate."""
    results = []
    for base in (
        model_weak(contexts, vocab, seed),
        model_strong(contexts, vocab, seed=seed),
    ):
        for noise in noises:
            rates = {o.spec: accuracy_rate(base, o, noise) for o in objectives}
            results.append(
                FlowResult(
                    base.name,
                    noise,
                    base.mean_true_prob,
                    base.strong_share(noise),
                    rates,
                )
            )
    return results


def pairwise_signs(result: FlowResult) -> dict[tuple[str, str], int]:
    """sign(dA/dt of a - dA/dt of b) for every ordered pair a < b."""
    specs = list(result.rates)
    return {
        (a, b): int(np.sign(result.rates[a] - result.rates[b]))
        for i, a in enumerate(specs)
        for b in specs[i + 1 :]
    }
