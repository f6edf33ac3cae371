"""Time Hugging Face transformers generating from the gaze bench checkpoint.

Replays the batch of the worker's `generate` bench (prompts, left padding,
new tokens, sampling settings, all read from the folder's `bench.json`) on
the same weights, in f32 on the CPU, and prints generated tokens per second
as JSON for two runs:

- `sdpa_no_attentions`: the default sdpa attention, no attentions returned;
- `eager_output_attentions`: eager attention with `output_attentions=True`
  and `return_dict_in_generate=True`, which returns every layer, head and
  step, the counterpart of gaze capturing all of them.

The two runs alternate, repetition by repetition, so a change in machine
load affects both alike. Not run in CI; see tests/reference/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import GenerationConfig


def load_batch(folder: Path) -> dict:
    """Reads `bench.json` and returns left-padded input ids and their mask."""
    bench = json.loads((folder / "bench.json").read_text())
    if bench["padding_side"] != "left":
        raise SystemExit(f"bench.json asks for {bench['padding_side']!r} padding; this script pads left")
    prompts = bench["prompt_ids"]
    longest = max(len(p) for p in prompts)
    pad = bench["pad_token_id"]
    ids = [[pad] * (longest - len(p)) + p for p in prompts]
    mask = [[0] * (longest - len(p)) + [1] * len(p) for p in prompts]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "bench": bench,
    }


def load_model(folder: Path, attention: str):
    """Loads the folder with the class its `config.json` names (gaze's random
    checkpoints carry no `model_type`, which the Auto classes need)."""
    architecture = json.loads((folder / "config.json").read_text())["architectures"][0]
    model = getattr(transformers, architecture).from_pretrained(
        folder, dtype=torch.float32, attn_implementation=attention
    )
    return model.eval()


def generation_config(bench: dict, attentions: bool) -> GenerationConfig:
    """Sampling as in the Rust bench; EOS is never produced early because
    `min_new_tokens` equals `max_new_tokens`. With `attentions`, generate
    returns every step's attention weights."""
    return GenerationConfig(
        do_sample=True,
        temperature=bench["temperature"],
        top_p=bench["top_p"],
        top_k=bench["top_k"] or 0,
        max_new_tokens=bench["max_new_tokens"],
        min_new_tokens=bench["max_new_tokens"],
        pad_token_id=bench["pad_token_id"],
        eos_token_id=None,
        output_attentions=attentions,
        return_dict_in_generate=attentions,
    )


def generate_once(model, batch: dict, config: GenerationConfig) -> float:
    """Generates one batch and returns the seconds it took."""
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            generation_config=config,
        )
    elapsed = time.perf_counter() - start

    attentions = config.output_attentions
    sequences = out.sequences if attentions else out
    generated = sequences.shape[1] - batch["input_ids"].shape[1]
    if generated != config.max_new_tokens:
        raise SystemExit(f"generated {generated} tokens, expected {config.max_new_tokens}")
    if attentions and len(out.attentions) != config.max_new_tokens:
        raise SystemExit(f"got attentions for {len(out.attentions)} steps, expected {config.max_new_tokens}")
    return elapsed


def summary(seconds: list[float], tokens: int) -> dict:
    rates = [tokens / s for s in seconds]
    return {
        "tokens_per_s_median": round(statistics.median(rates), 2),
        "tokens_per_s_min": round(min(rates), 2),
        "tokens_per_s_max": round(max(rates), 2),
        "seconds_per_batch_median": round(statistics.median(seconds), 4),
        "repetitions": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="folder written by the write_bench_model example")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per run (default 3)")
    parser.add_argument("--repetitions", type=int, default=15, help="timed batches per run (default 15)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = load_batch(args.model)
    runs = {
        "sdpa_no_attentions": (load_model(args.model, "sdpa"), generation_config(batch["bench"], False)),
        "eager_output_attentions": (load_model(args.model, "eager"), generation_config(batch["bench"], True)),
    }

    for _ in range(args.warmup):
        for model, config in runs.values():
            generate_once(model, batch, config)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repetitions):
        for name, (model, config) in runs.items():
            seconds[name].append(generate_once(model, batch, config))

    new_tokens = batch["bench"]["max_new_tokens"]
    tokens = batch["input_ids"].shape[0] * new_tokens
    report = {
        "batch": batch["input_ids"].shape[0],
        "prompt_lengths": [len(p) for p in batch["bench"]["prompt_ids"]],
        "new_tokens": new_tokens,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "runs": {name: summary(s, tokens) for name, s in seconds.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
