"""Build tiny reference checkpoints with transformers and record golden outputs.

For three model families (Llama 3, Llama 2, Qwen2 style) this script trains a
small tokenizer on the test corpus, initialises a seeded f32 model, saves both
under tests/golden/<name>/ and records, for a set of prompts, what transformers
produces: token ids, character offsets, greedy tokens and the attention rows
of every decode step. The Rust tests compare gaze against these files.

The script is not run in CI; see tests/reference/README.md for how to rerun it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "worker" / "src" / "testmodel" / "corpus.txt"
GOLDEN = REPO / "tests" / "golden"

NEW_TOKENS = 6

# The split pattern of Llama 3's byte-level BPE tokenizer (digits in runs of
# up to three). Qwen2 uses the same pattern with single digits.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")

# Chat templates in the style of each family, written for these tests. The
# Llama 3 and Llama 2 ones trim message content, as the published ones do.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)
LLAMA2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] %}{%- set rest = messages[1:] %}"
    "{%- else %}{%- set system = none %}{%- set rest = messages %}{%- endif %}"
    "{%- for message in rest %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Roles must alternate between user and assistant') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system is not none %}"
    "{{- bos_token + '[INST] <<SYS>>\\n' + system.strip() + '\\n<</SYS>>\\n\\n'"
    " + message['content'].strip() + ' [/INST]' }}"
    "{%- else %}"
    "{{- bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}"
    "{%- endif %}"
    "{%- else %}"
    "{{- ' ' + message['content'].strip() + ' ' + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

RAW_PROMPTS = {
    "plain": "The appellant arrived in the United Kingdom in 2019 and claimed asylum.",
    "names": "Zoë Nguyễn and Siobhán O'Brien met José at the tribunal.",
    "scripts": "محمد, राहुल and 王芳 appealed; Łukasz did not.",
    # "Zoe" with a combining diaeresis (NFD): one visible letter, two chars.
    "decomposed": "The appellant, Zoe\u0308 Fletcher, is 34.",
    "spaces": "  Two  leading spaces,\ttabs\nand a newline.",
}

# The chat prompt: user message = prefix + vignette + suffix, with template
# fields inside the vignette. The system message ends in a newline so that
# templates that trim content and templates that do not both appear.
CHAT = {
    "system": "You are an immigration judge.\n",
    "instruction_prefix": "Read the case below.\n\n",
    "vignette": "The appellant, {name}, is {age} and from {country}.",
    "instruction_suffix": "\n\nAnswer GRANT or REFUSE.",
    "fields": {"name": "Siobhán Nguyễn", "age": "34", "country": "Vietnam"},
    "assistant_prefix": "DECISION:",
}

BATCH = [RAW_PROMPTS["plain"], RAW_PROMPTS["names"], "José appealed."]


def corpus_lines() -> list[str]:
    return [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- tokenizers


def byte_level_tokenizer(split: str, vocab_size: int, specials: list[str], nfc: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    return tok


def llama3_tokenizer() -> Tokenizer:
    specials = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]
    tok = byte_level_tokenizer(LLAMA3_SPLIT, 700, specials, nfc=False)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    return tok


def qwen2_tokenizer() -> Tokenizer:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = byte_level_tokenizer(QWEN2_SPLIT, 700, specials, nfc=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def llama2_tokenizer() -> Tokenizer:
    """SentencePiece-style BPE: `▁` for spaces, byte fallback, `<s>` BOS.

    Training splits words on `▁`, but the saved tokenizer does not split, as
    converted Llama 2 tokenizers do. The 256 byte tokens `<0x00>`..`<0xFF>`
    follow the three special tokens, as in Llama 2's vocabulary, and the
    alphabet is limited so that rare scripts fall back to bytes.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    # The 64 most frequent characters, ties broken by code point, so that
    # training is reproducible (the trainer's own limit breaks ties at random).
    counts = Counter(ch for line in corpus_lines() for ch in line.replace(" ", "▁"))
    alphabet = sorted(counts, key=lambda ch: (-counts[ch], ch))[:64]
    trainer = BpeTrainer(
        vocab_size=560,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)

    spec = json.loads(tok.to_str())
    trained = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for token, _ in trained:
        if token not in vocab:
            vocab[token] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "first",
        "split": False,
    }
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return tok


# ---------------------------------------------------------------- models


def randomise(model: torch.nn.Module, seed: int, std: float) -> None:
    """Re-draw every parameter so that attention is far from uniform.

    transformers' default init (std 0.02, zero biases, unit norms) gives a
    tiny model near-uniform attention and zero biases, which would hide bugs.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                param.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                param.copy_(0.5 * noise)
            else:
                param.copy_(std * noise)


SPECS = {
    "llama3": dict(
        tokenizer=llama3_tokenizer,
        template=LLAMA3_TEMPLATE,
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|end_of_text|>",
        model_cls=LlamaForCausalLM,
        config=lambda tok: LlamaConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256,
            },
            bos_token_id=tok.token_to_id("<|begin_of_text|>"),
            eos_token_id=[tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")],
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
        ),
        seed=3,
    ),
    "llama2": dict(
        tokenizer=llama2_tokenizer,
        template=LLAMA2_TEMPLATE,
        bos="<s>",
        eos="</s>",
        pad="<unk>",
        model_cls=LlamaForCausalLM,
        config=lambda tok: LlamaConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            bos_token_id=1,
            eos_token_id=2,
            tie_word_embeddings=True,
        ),
        seed=5,
    ),
    "qwen2": dict(
        tokenizer=qwen2_tokenizer,
        template=CHATML_TEMPLATE,
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        model_cls=Qwen2ForCausalLM,
        config=lambda tok: Qwen2Config(
            vocab_size=tok.get_vocab_size(),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            use_sliding_window=False,
            # Like Qwen2 checkpoints: the config names a BOS id that the
            # tokenizer never adds.
            bos_token_id=tok.token_to_id("<|endoftext|>"),
            eos_token_id=tok.token_to_id("<|im_end|>"),
            tie_word_embeddings=False,
        ),
        seed=7,
    ),
}


def hub_style_config(model_dir: Path, config) -> None:
    """Rewrite config.json with top-level `rope_theta` and `rope_scaling`.

    transformers 5 saves these inside `rope_parameters`. Published Llama,
    Mistral and Qwen checkpoints keep them at the top level, and transformers
    reads both, so the golden folders follow the published layout.
    """
    path = model_dir / "config.json"
    data = json.loads(path.read_text())
    rope = data.pop("rope_parameters", None) or {}
    data["rope_theta"] = rope.get("rope_theta", getattr(config, "rope_theta", None))
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if scaling and scaling.get("rope_type", "default") != "default":
        data["rope_scaling"] = scaling
    else:
        data["rope_scaling"] = None
    data["torch_dtype"] = "float32"
    data.pop("dtype", None)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def tokenizer_config(spec: dict) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "chat_template": spec["template"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
    }


def build(name: str, spec: dict) -> Path:
    out = GOLDEN / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    tok = spec["tokenizer"]()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(spec), indent=2, ensure_ascii=False) + "\n")

    config = spec["config"](tok)
    config._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = spec["model_cls"](config).to(torch.float32)
    randomise(model, spec["seed"], std=0.25)
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    hub_style_config(out, config)
    return out


# ---------------------------------------------------------------- recording


def f32_list(values) -> list[float]:
    """Float32 values as the shortest decimals that parse back to the same f32."""
    return [float(str(np.float32(v))) for v in np.asarray(values, dtype=np.float32).ravel()]


def tokens_from_lib(lib: Tokenizer, text: str, add_special_tokens: bool) -> dict:
    enc = lib.encode(text, add_special_tokens=add_special_tokens)
    return {"ids": enc.ids, "offsets": [list(o) for o in enc.offsets], "special_mask": enc.special_tokens_mask}


def record_tokens(hf, lib: Tokenizer, text: str, add_special_tokens: bool) -> dict:
    enc = hf(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [list(map(int, o)) for o in enc["offset_mapping"]]

    direct = tokens_from_lib(lib, text, add_special_tokens)
    assert direct["ids"] == ids, f"transformers and tokenizers disagree on ids for {text!r}"
    assert direct["offsets"] == offsets, f"transformers and tokenizers disagree on offsets for {text!r}"

    utf8 = text.encode("utf-8")
    return {
        "text": text,
        "add_special_tokens": add_special_tokens,
        "input_ids": ids,
        "tokens": hf.convert_ids_to_tokens(ids),
        # Character offsets (Python str indices), as return_offsets_mapping gives.
        "offsets": offsets,
        "token_texts": [text[s:e] for s, e in offsets],
        # The same spans in UTF-8 bytes, for checking the byte-to-char step.
        "byte_offsets": [[len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))] for s, e in offsets],
        "special_mask": direct["special_mask"],
        "text_bytes": len(utf8),
    }


def attention_rows(attentions, row: int, keep: list[int] | None) -> list:
    """[step][layer][head] -> list of keys, for one batch row.

    Step 0 is the prefill, whose last query row chose the first new token.
    Step k is the single query row of decode step k over prompt + k keys.
    `keep` lists the key positions of the unpadded prompt.
    """
    steps = []
    for step, layers in enumerate(attentions):
        per_layer = []
        for layer in layers:
            probs = layer[row, :, -1, :]
            if keep is not None:
                prompt_keys = len(keep)
                padded_prompt = probs.shape[-1] - step
                cols = keep + list(range(padded_prompt, padded_prompt + step))
                assert len(cols) == prompt_keys + step
                probs = probs[:, cols]
            per_layer.append([f32_list(head) for head in probs])
        steps.append(per_layer)
    return steps


def generate(model, input_ids, attention_mask, pad_id):
    return model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        output_attentions=True,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=pad_id,
    )


def eos_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def record_generation(model, ids: list[int], pad_id: int) -> dict:
    input_ids = torch.tensor([ids])
    out = generate(model, input_ids, torch.ones_like(input_ids), pad_id)
    new = out.sequences[0, len(ids):].tolist()
    assert len(new) == NEW_TOKENS, f"generation stopped early: {new}"
    assert not set(new) & eos_ids(model), f"generation produced EOS: {new}; pick another seed"
    return {
        "generated_ids": new,
        "first_step_logits": f32_list(out.scores[0][0]),
        "attentions": attention_rows(out.attentions, 0, None),
    }


def owner(text: str, token: list[int], spans: list[tuple[str, list[int]]], gap: str | None):
    """The label of the span that owns a token, by gaze's mapping rule.

    The largest overlap wins, counted in non-whitespace characters (in all
    characters when the token is only whitespace); ties go to the earlier
    span. Characters outside every span form gap spans labelled `gap`.
    """
    piece = text[token[0]:token[1]]
    by_nonspace = any(not ch.isspace() for ch in piece)

    def amount(span: list[int]) -> int:
        start, end = max(token[0], span[0]), min(token[1], span[1])
        if end <= start:
            return 0
        chars = text[start:end]
        return sum(not ch.isspace() for ch in chars) if by_nonspace else len(chars)

    candidates = []
    pos = 0
    for label, span in sorted(spans, key=lambda s: s[1][0]):
        if span[0] > pos:
            candidates.append((gap, [pos, span[0]]))
        candidates.append((label, span))
        pos = max(pos, span[1])
    if pos < len(text):
        candidates.append((gap, [pos, len(text)]))

    best, best_amount = gap, 0
    for label, span in candidates:
        if amount(span) > best_amount:
            best, best_amount = label, amount(span)
    return best


def chat_case(hf, lib: Tokenizer) -> dict:
    vignette = CHAT["vignette"]
    fields_in_vignette = []
    for field, value in CHAT["fields"].items():
        marker = "{" + field + "}"
        start = vignette.index(marker)
        vignette = vignette.replace(marker, value)
        fields_in_vignette.append((field, start, value))
    # Each start is measured after the earlier fields are filled, and the
    # fields appear in the vignette in this order, so the starts are final.
    user = CHAT["instruction_prefix"] + vignette + CHAT["instruction_suffix"]
    messages = [
        {"role": "system", "content": CHAT["system"]},
        {"role": "user", "content": user},
    ]
    rendered = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text = rendered + CHAT["assistant_prefix"]

    # Find where each message's content lands: render once with sentinels in
    # place of the contents, then match the real render piece by piece,
    # allowing the template to have stripped the content.
    sentinels = ["\ue000system\ue001", "\ue000user\ue001"]
    skeleton = hf.apply_chat_template(
        [{"role": m["role"], "content": s} for m, s in zip(messages, sentinels)],
        tokenize=False,
        add_generation_prompt=True,
    )
    pieces = []
    rest = skeleton
    for sentinel in sentinels:
        before, rest = rest.split(sentinel)
        pieces.append(before)
    pieces.append(rest)

    spans = []
    pos = 0
    for i, message in enumerate(messages):
        assert text.startswith(pieces[i], pos)
        pos += len(pieces[i])
        content = message["content"]
        variants = [(content, 0), (content.strip(), len(content) - len(content.lstrip()))]
        for candidate, trimmed in variants:
            if text.startswith(candidate + pieces[i + 1], pos):
                spans.append((pos, pos + len(candidate), trimmed))
                pos += len(candidate)
                break
        else:
            raise AssertionError(f"content {content!r} not found in the rendered prompt")
    (sys_start, sys_end, _), (user_start, user_end, user_trim) = spans
    base = user_start - user_trim
    prefix_len = len(CHAT["instruction_prefix"])
    def clip(span: list[int]) -> list[int]:
        # A template that trims the user message also trims its first or
        # last region.
        return [min(max(span[0], user_start), user_end), max(min(span[1], user_end), user_start)]

    regions = [
        ("system", [sys_start, sys_end]),
        ("instruction_prefix", clip([base, base + prefix_len])),
        ("vignette", clip([base + prefix_len, base + prefix_len + len(vignette)])),
        ("instruction_suffix", clip([base + prefix_len + len(vignette), base + len(user)])),
        ("assistant_prefix", [len(rendered), len(text)]),
    ]
    regions = [(r, s) for r, s in regions if s[1] > s[0]]
    fields = [
        (field, [base + prefix_len + start, base + prefix_len + start + len(value)])
        for field, start, value in fields_in_vignette
    ]
    for field, span in fields:
        assert text[span[0]:span[1]] == CHAT["fields"][field]

    case = record_tokens(hf, lib, text, add_special_tokens=False)
    case["messages"] = messages
    case["assistant_prefix"] = CHAT["assistant_prefix"]
    case["user_parts"] = {
        "instruction_prefix": CHAT["instruction_prefix"],
        "vignette": vignette,
        "instruction_suffix": CHAT["instruction_suffix"],
        "fields": [{"field": f, "start": s, "end": s + len(v)} for f, s, v in fields_in_vignette],
    }
    case["rendered"] = rendered
    case["regions"] = [{"region": r, "start": s, "end": e} for r, (s, e) in regions]
    case["fields"] = [{"field": f, "start": s, "end": e} for f, (s, e) in fields]
    # Each token's region and field by gaze's mapping rule (see `owner`);
    # characters outside every region are chat_template.
    case["token_regions"] = [owner(text, o, regions, "chat_template") for o in case["offsets"]]
    case["token_fields"] = [owner(text, o, fields, None) for o in case["offsets"]]
    return case


def batch_case(model, hf, lib: Tokenizer, texts: list[str], pad_id: int) -> dict:
    hf.padding_side = "left"
    enc = hf(texts, padding=True, return_tensors="pt")
    out = generate(model, enc["input_ids"], enc["attention_mask"], pad_id)
    width = enc["input_ids"].shape[1]
    rows = []
    for row, text in enumerate(texts):
        mask = enc["attention_mask"][row].tolist()
        keep = [i for i, m in enumerate(mask) if m == 1]
        ids = [enc["input_ids"][row, i].item() for i in keep]
        assert ids == lib.encode(text).ids
        new = out.sequences[row, width:].tolist()
        assert len(new) == NEW_TOKENS, f"row {row} stopped early: {new}"
        assert not set(new) & eos_ids(model), f"row {row} produced EOS: {new}; pick another seed"
        rows.append(
            {
                "text": text,
                "input_ids": ids,
                "padding": width - len(ids),
                "generated_ids": new,
                "attentions": attention_rows(out.attentions, row, keep),
            }
        )
    return {
        "padding_side": "left",
        "pad_token_id": pad_id,
        "padded_input_ids": enc["input_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "rows": rows,
    }


def record(name: str, model_dir: Path) -> dict:
    hf = AutoTokenizer.from_pretrained(model_dir)
    lib = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    pad_id = hf.pad_token_id

    cases = []
    for case_name, text in RAW_PROMPTS.items():
        case = {"name": case_name, **record_tokens(hf, lib, text, add_special_tokens=True)}
        case.update(record_generation(model, case["input_ids"], pad_id))
        cases.append(case)

    chat = {"name": "chat", **chat_case(hf, lib)}
    chat.update(record_generation(model, chat["input_ids"], pad_id))
    cases.append(chat)

    return {
        "model": name,
        "generator": "tests/reference/make_golden.py",
        "versions": {
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "tokenizers": __import__("tokenizers").__version__,
        },
        "files_sha256": sha256_files(model_dir),
        "new_tokens": NEW_TOKENS,
        "bos_token_id": hf.bos_token_id,
        "eos_token_id": hf.eos_token_id,
        "cases": cases,
        "batch": batch_case(model, hf, lib, BATCH, pad_id),
    }


def sha256_files(model_dir: Path) -> dict:
    names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    return {n: hashlib.sha256((model_dir / n).read_bytes()).hexdigest() for n in names if (model_dir / n).exists()}


def write_golden(model_dir: Path, golden: dict) -> None:
    path = model_dir / "golden.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{path}: {path.stat().st_size // 1024} KiB, {len(golden['cases'])} cases")


def legacy_metaspace(llama2_dir: Path) -> None:
    """Record tokens of the Llama 2 tokenizer in its older tokenizer.json form.

    Many published Llama 2 and Mistral files express the `▁` handling as a
    normalizer (prepend `▁`, replace spaces) with no pre-tokenizer. The
    vocabulary and merges are the Llama 2 golden's, so only offsets differ.
    Tokenizer only: there is no model in this folder.
    """
    out = GOLDEN / "llama2-legacy"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    spec = json.loads((llama2_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    spec["pre_tokenizer"] = None
    Tokenizer.from_str(json.dumps(spec)).save(str(out / "tokenizer.json"))
    shutil.copy(llama2_dir / "tokenizer_config.json", out / "tokenizer_config.json")

    hf = AutoTokenizer.from_pretrained(out)
    lib = Tokenizer.from_file(str(out / "tokenizer.json"))
    cases = [{"name": name, **record_tokens(hf, lib, text, add_special_tokens=True)} for name, text in RAW_PROMPTS.items()]
    golden = {
        "model": "llama2-legacy",
        "generator": "tests/reference/make_golden.py",
        "files_sha256": sha256_files(out),
        "bos_token_id": hf.bos_token_id,
        "cases": cases,
    }
    path = out / "golden.json"
    path.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{path}: {path.stat().st_size // 1024} KiB, {len(cases)} cases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SPECS), help="build only this model")
    parser.add_argument(
        "--test-model",
        type=Path,
        help="also record goldens for the Rust test model written to this folder "
        "(by `gaze-worker make-test-model DIR`); saved as tests/golden/test-model/golden.json",
    )
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)

    for name, spec in SPECS.items():
        if args.only and name != args.only:
            continue
        out = build(name, spec)
        write_golden(out, record(name, out))
        if name == "llama2":
            legacy_metaspace(out)

    if args.test_model:
        out = GOLDEN / "test-model"
        out.mkdir(parents=True, exist_ok=True)
        write_golden(out, record("test-model", args.test_model))


if __name__ == "__main__":
    main()
