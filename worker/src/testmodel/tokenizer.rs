//! The test model's tokenizer: byte-level BPE in the layout of Llama 3's
//! (regex split, byte-level alphabet, BOS added by the post-processor),
//! trained on the built-in corpus.

use std::collections::HashSet;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, TokenizerImpl};

/// Case summaries, instructions and decisions with names in Latin (with
/// diacritics), Arabic, Devanagari and Han script, one text per line.
const CORPUS: &str = include_str!("corpus.txt");

/// The special tokens, in id order from 0.
pub const SPECIAL_TOKENS: [&str; 5] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

/// Target vocabulary size, special tokens included; training stops earlier
/// if every corpus word has become one token.
const VOCAB_SIZE: usize = 1600;

/// The pre-tokenizer split of Llama 3: contractions, letter runs with one
/// leading non-letter, digit runs of up to three, punctuation runs and
/// whitespace.
const SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A chat template in the style of Llama 3's: it writes the BOS, a header
/// per message, and trims each message's content.
pub const CHAT_TEMPLATE: &str = concat!(
    "{{- bos_token }}",
    "{%- for message in messages %}",
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}",
    "{{- message['content'] | trim }}",
    "{{- '<|eot_id|>' }}",
    "{%- endfor %}",
    "{%- if add_generation_prompt %}",
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}",
    "{%- endif %}",
);

type Trainable = TokenizerImpl<
    BPE,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Trains the test tokenizer and returns its `tokenizer.json` text.
/// Training is deterministic: the trainer sorts its alphabet and breaks
/// merge ties by pair, so the same corpus always gives the same file.
pub fn train_tokenizer() -> tokenizers::Result<String> {
    let mut tokenizer = Trainable::new(BPE::default());
    let split = Split::new(
        SplitPattern::Regex(SPLIT_PATTERN.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));

    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(VOCAB_SIZE)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(alphabet)
        .build();
    tokenizer.train(
        &mut trainer,
        CORPUS.lines().filter(|line| !line.trim().is_empty()),
    )?;

    let bos = SPECIAL_TOKENS[0];
    let template = TemplateProcessing::builder()
        .try_single(format!("{bos} $A"))?
        .try_pair(format!("{bos} $A {bos} $B"))?
        .special_tokens(vec![(bos, 0)])
        .build()?;
    // Llama 3 keeps the space in a token's offsets (no trimming).
    let offsets = ByteLevel::new(true, false, true);
    tokenizer.with_post_processor(Some(PostSequence::new(vec![
        offsets.into(),
        template.into(),
    ])));

    tokenizer.to_string(true)
}
