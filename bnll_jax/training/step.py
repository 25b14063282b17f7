"""One optimizer step: micro-batch scan, normalisation, guarded update.

A global batch arrives as arrays of shape [k, b, t]: k micro-batches of b
sequences each. The step scans over the k micro-batches inside one jitted
function, summing gradients of the *unnormalised* loss, so that the result
is exactly the gradient of the token mean over the whole batch:

    L = sum_{m, i} f(p_mi) * kept_mi / sum_{m, i} kept_mi

where m runs over micro-batches (and hosts, since the arrays are global)
and i over their tokens. Dividing each micro-batch by its own count first,
as the paper's PyTorch trainer does, weights a token by 1/(tokens in its
micro-batch) instead; that normalisation is available as "reference" for
runs that must match the trainer's numbers.

A step whose loss or gradient is not finite leaves parameters and
optimizer state untouched and increments two counters in the state; the
loop stops the run when the streak gets too long.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bnll_jax import loss as loss_lib

Batch = dict[str, jax.Array]

# Guards the reference normalisation against a micro-batch whose tokens
# were all dropped by a threshold, as the reference trainer does.
_REFERENCE_EPS = 1e-8


@flax.struct.dataclass
class TrainState:
    """Everything a checkpoint must hold to continue a run exactly."""

    step: jax.Array  # int32 []: optimizer steps taken, skipped ones included
    params: Any  # pure dict of float32 arrays
    opt_state: Any
    # Key for stochastic parts of the step. The backbones and objectives
    # draw nothing today, so it only advances; it is checkpointed so that a
    # stochastic extension resumes on the same stream.
    rng: jax.Array  # uint32 [2]
    nonfinite_total: jax.Array  # int32 []
    nonfinite_streak: jax.Array  # int32 []

    @property
    def updates_applied(self) -> jax.Array:
        return self.step - self.nonfinite_total


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """How a micro-batch's loss is computed and normalised (static)."""

    objective: Any
    normalization: str = "token_mean"
    reference_ranks: int = 1
    vocab_block: int = 1024
    token_chunk: int | None = None


def _micro_batch_terms(
    model: nnx.Module, micro: Batch, settings: LossSettings
) -> loss_lib.LossOutput:
    """Loss terms of one micro-batch; leaves have a leading group axis.

    Under "reference" the micro-batch's rows are split into
    `reference_ranks` groups (the reference's per-GPU micro-batches) whose
    terms stay separate; otherwise there is one group.
    """
    hidden_btd = model(
        micro["input_ids"],
        positions=micro["positions"],
        segment_ids=micro["segment_ids"],
    )
    head_vd = model.head_weight()
    groups = (
        settings.reference_ranks if settings.normalization == "reference" else 1
    )

    def grouped(x: jax.Array) -> jax.Array:
        return x.reshape(groups, x.shape[0] // groups, *x.shape[1:])

    def one_group(hidden, targets, mask):
        return loss_lib.fused_sequence_loss(
            hidden,
            head_vd,
            targets,
            mask,
            settings.objective,
            token_chunk=settings.token_chunk,
            vocab_block=settings.vocab_block,
        )

    return jax.vmap(one_group)(
        grouped(hidden_btd),
        grouped(micro["targets"]),
        grouped(micro["loss_mask"] > 0),
    )


def _to_optimize(terms: loss_lib.LossOutput, settings: LossSettings):
    """The scalar whose gradient is accumulated for one micro-batch."""
    if settings.normalization == "reference":
        means = terms.loss_sum / (terms.token_count + _REFERENCE_EPS)
        return jnp.mean(means)
    return jnp.sum(terms.loss_sum)


def accumulate_gradients(
    params: Any,
    graphdef: nnx.GraphDef,
    rest: Any,
    batch: Batch,
    settings: LossSettings,
    grad_shardings: Any = None,
) -> tuple[jax.Array, Any, loss_lib.LossOutput]:
    """(normalised loss, its gradient, summed loss terms) over [k, b, t].

    `grad_shardings`, when given, pins the gradient accumulator to the
    parameters' layout so FSDP never holds a full replica of it.
    """
    k = batch["input_ids"].shape[0]

    def micro_loss(params, micro):
        model = nnx.merge(graphdef, params, rest)
        terms = _micro_batch_terms(model, micro, settings)
        return _to_optimize(terms, settings), terms

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def constrain(tree):
        if grad_shardings is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, grad_shardings)

    def body(carry, micro):
        loss_acc, grads_acc, terms_acc = carry
        (value, terms), grads = grad_fn(params, micro)
        grads_acc = constrain(jax.tree.map(jnp.add, grads_acc, grads))
        terms = jax.tree.map(jnp.sum, terms)
        terms_acc = jax.tree.map(jnp.add, terms_acc, terms)
        return (loss_acc + value, grads_acc, terms_acc), None

    zero_grads = constrain(jax.tree.map(jnp.zeros_like, params))
    zero_terms = loss_lib.LossOutput(*([jnp.zeros((), jnp.float32)] * 5))
    init = (jnp.zeros((), jnp.float32), zero_grads, zero_terms)
    (loss_total, grads, terms), _ = jax.lax.scan(body, init, batch)

    if settings.normalization == "reference":
        scale = 1.0 / k
    else:
        # Exact token mean; max(., 1) keeps an all-masked batch at zero
        # loss and gradient instead of NaN.
        scale = 1.0 / jnp.maximum(terms.token_count, 1.0)
    grads = jax.tree.map(lambda g: g * scale, grads)
    return loss_total * scale, grads, terms


def _select(pred: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    return num / jnp.maximum(den, 1.0)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    graphdef: nnx.GraphDef,
    rest: Any,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    settings: LossSettings,
    grad_shardings: Any = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Forward, objective, gradients, guarded Optax update, metrics."""
    loss, grads, terms = accumulate_gradients(
        state.params, graphdef, rest, batch, settings, grad_shardings
    )
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    skipped = (~finite).astype(jnp.int32)
    new_state = state.replace(
        step=state.step + 1,
        params=_select(finite, params, state.params),
        opt_state=_select(finite, opt_state, state.opt_state),
        rng=jax.random.fold_in(state.rng, state.step),
        nonfinite_total=state.nonfinite_total + skipped,
        nonfinite_streak=(state.nonfinite_streak + skipped) * skipped,
    )

    metrics = {
        "loss": loss,
        "nll": _ratio(terms.nll_sum, terms.response_count),
        "mean_prob": _ratio(terms.prob_sum, terms.response_count),
        "kept_fraction": _ratio(terms.token_count, terms.response_count),
        "grad_norm": grad_norm,
        "learning_rate": schedule(state.updates_applied),
        "response_tokens": terms.response_count,
        "tokens": jnp.sum(batch["segment_ids"] > 0).astype(jnp.float32),
        "skipped": skipped,
        "nonfinite_total": new_state.nonfinite_total,
        "nonfinite_streak": new_state.nonfinite_streak,
    }
    return new_state, metrics


def eval_step(
    params: Any,
    batch: Batch,
    *,
    graphdef: nnx.GraphDef,
    rest: Any,
    settings: LossSettings,
) -> loss_lib.LossOutput:
    """Summed loss terms over a [k, b, t] batch, no gradients."""

    def body(acc, micro):
        model = nnx.merge(graphdef, params, rest)
        terms = jax.tree.map(
            jnp.sum, _micro_batch_terms(model, micro, settings)
        )
        return jax.tree.map(jnp.add, acc, terms), None

    zero = loss_lib.LossOutput(*([jnp.zeros((), jnp.float32)] * 5))
    totals, _ = jax.lax.scan(body, zero, batch)
    return totals


def jit_train_step(
    step_fn: Callable[..., Any],
    state_shardings: Any,
    batch_sharding: Any,
    replicated: Any,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The step as one SPMD program: sharded in/out, state donated."""
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )
