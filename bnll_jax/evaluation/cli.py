"""`bnll eval`: generate completions for a benchmark and score them.

    bnll eval --model M --task {math,mcq,figfont,gsm_symbolic}
              [--data PATH ...] [--n 16] [--temperature 1.0] [--out DIR]

M is a training run or checkpoint directory, an exported Hugging Face
directory, a GGUF file, a preset name (`bnll_jax.presets`) or a hub id.
Writes `samples.jsonl` (one line per prompt and sample: prompt id,
completion, extracted answer, correctness) and `summary.json` to --out,
and prints the summary as a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

logger = logging.getLogger(__name__)

TASK_NAMES = ("math", "mcq", "figfont", "gsm_symbolic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="run/checkpoint directory, HF directory, .gguf, preset or hub id",
    )
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        help="benchmark file; repeat for several math benchmarks "
        "(figfont/gsm_symbolic default to a reasoning-gym test split)",
    )
    parser.add_argument(
        "--n", type=int, default=None, help="samples per prompt"
    )
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-size", type=int, default=8, help="prompts per decode batch"
    )
    parser.add_argument(
        "--prompt-format",
        default="chat",
        help="'chat' (the tokenizer's chat template) or a raw format: "
        "qwen-boxed, deepseek-math, llama-base-boxed, plain",
    )
    parser.add_argument(
        "--system",
        default=None,
        help="system turn for chat prompts (default: the task's own, "
        "figfont only; '' for none); use what the model was trained with",
    )
    parser.add_argument(
        "--generated-start",
        type=int,
        default=None,
        help="figfont/gsm_symbolic without --data: first reasoning-gym "
        "index of the test split (default: the data builder's)",
    )
    parser.add_argument(
        "--generated-size",
        type=int,
        default=None,
        help="figfont/gsm_symbolic without --data: test split size",
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer to use (default: the model's own)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate the first N problems of each benchmark/source",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        help="parameter and compute dtype (bfloat16 on accelerators)",
    )
    parser.add_argument(
        "--tensor-parallel",
        type=int,
        default=1,
        help="devices each model replica is split over (the rest split "
        "the batch)",
    )
    parser.add_argument("--out", default="out/eval", help="output directory")


def _settings(args, task):
    from bnll_jax.generation import SamplingConfig

    defaults = task.defaults
    return SamplingConfig(
        temperature=(
            defaults.temperature
            if args.temperature is None
            else args.temperature
        ),
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens or defaults.max_new_tokens,
        num_samples=args.n or defaults.num_samples,
        seed=args.seed,
    )


def _prompts(task, problems, tokenizer, prompt_format, system):
    """Prompt strings and whether the tokenizer should add BOS."""
    from bnll_jax import tokenizer as tokenizer_lib
    from bnll_jax.generation import text

    if prompt_format == "chat":
        system = task.system if system is None else (system or None)
        prompts = [
            text.chat_prompt(tokenizer, task.user_message(p), system)
            for p in problems
        ]
        return prompts, False
    # The boxed raw formats carry the answer instruction themselves.
    plain = prompt_format == "plain"
    prompts = [
        tokenizer_lib.format_raw_prompt(
            prompt_format,
            task.user_message(p) if plain else task.question_text(p),
        )
        for p in problems
    ]
    return prompts, True


def _first_per_source(problems, limit: int):
    """The first `limit` problems of each benchmark (source), in order."""
    taken: dict[str, int] = {}
    kept = []
    for problem in problems:
        if taken.get(problem.source, 0) < limit:
            taken[problem.source] = taken.get(problem.source, 0) + 1
            kept.append(problem)
    return kept


def _write_jsonl(path: str, rows) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def _table(summary: dict) -> str:
    """The numeric leaves of a summary, one `name  value` line each."""
    lines = []

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, float):
            lines.append((prefix, f"{value:.4f}"))
        elif isinstance(value, int):
            lines.append((prefix, str(value)))

    walk("", summary)
    width = max((len(name) for name, _ in lines), default=0)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in lines)


def run(args: argparse.Namespace) -> int:
    from bnll_jax.evaluation import tasks
    from bnll_jax.evaluation.loading import load_model_and_tokenizer
    from bnll_jax.generation import generate_text

    task = tasks.get(args.task)
    if isinstance(task, tasks.ReasoningGymTask):
        problems = task.load(
            args.data, args.generated_start, args.generated_size
        )
    else:
        problems = task.load(args.data)
    if args.limit is not None:
        problems = _first_per_source(problems, args.limit)
    if not problems:
        raise ValueError("no problems to evaluate (empty data or --limit 0)")
    config = _settings(args, task)

    model, tokenizer, mesh = load_model_and_tokenizer(
        args.model, args.tokenizer, args.dtype, args.tensor_parallel
    )
    batch_size = args.batch_size
    if mesh is not None and batch_size % mesh.shape["data"]:
        # Every data shard needs the same number of rows.
        shards = mesh.shape["data"]
        batch_size = -(-batch_size // shards) * shards
        logger.info(
            "batch size rounded up to %d (%d data shards)", batch_size, shards
        )
    prompts, add_special = _prompts(
        task, problems, tokenizer, args.prompt_format, args.system
    )
    logger.info(
        "evaluating %s on %d %s problems, %d samples each",
        args.model,
        len(problems),
        task.name,
        config.num_samples,
    )
    completions, generation = generate_text(
        model,
        tokenizer,
        prompts,
        config,
        add_special_tokens=add_special,
        batch_size=batch_size,
        mesh=mesh,
        progress=True,
    )

    samples = []
    for problem, prompt_samples in zip(problems, completions, strict=True):
        for index, completion in enumerate(prompt_samples):
            scored = task.score(completion.text, problem)
            samples.append(
                {
                    "prompt_id": problem.id,
                    "source": problem.source,
                    "sample": index,
                    "completion": completion.text,
                    "extracted": scored.extracted,
                    "answer": problem.answer,
                    "correct": bool(scored.correct),
                    "details": scored.details,
                    "num_tokens": completion.num_tokens,
                    "finished": completion.finished,
                }
            )
    summary = {
        "task": task.name,
        "model": args.model,
        "data": args.data,
        "prompt_format": args.prompt_format,
        "system": args.system,
        "sampling": {
            "temperature": config.temperature,
            "top_p": config.top_p,
            "num_samples": config.num_samples,
            "max_new_tokens": config.max_new_tokens,
            "seed": config.seed,
        },
        "problems": len(problems),
        "unfinished_samples": sum(not s["finished"] for s in samples),
        "generated_tokens": generation.generated_tokens,
        "seconds": generation.seconds,
        "compile_seconds": generation.compile_seconds,
        "tokens_per_second": generation.tokens_per_second,
        "metrics": task.summarise(samples),
    }

    os.makedirs(args.out, exist_ok=True)
    _write_jsonl(os.path.join(args.out, "samples.jsonl"), samples)
    with open(os.path.join(args.out, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    print(_table({"metrics": summary["metrics"]}))
    print(
        f"{generation.generated_tokens} tokens at "
        f"{generation.tokens_per_second:.1f} tokens/s (compilation, "
        f"{generation.compile_seconds:.1f} s, excluded); "
        f"{summary['unfinished_samples']} samples hit --max-new-tokens; "
        f"wrote {args.out}/samples.jsonl and summary.json"
    )
    return 0
