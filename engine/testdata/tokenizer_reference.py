#!/usr/bin/env python3
"""Reference tokenizations for engine/tokenizer_test, from independent implementations.

Writes into OUT_DIR:
  reference.json         lines of real text and edge cases with the token ids llama.cpp
                         (llama-cpp-python) gives for them, Hugging Face tokenizers' ids and
                         pre-tokenizer words; llama.cpp's bytes of every token and its
                         end-of-generation ids
  tokenizer.json         the GGUF's vocabulary, merges, pre-tokenizer and added tokens as a
                         Hugging Face tokenizer, serialized by the tokenizers library itself
  tokenizer_config.json  bos/eos tokens and the chat template, as transformers writes them
  llama3/                the same three for the model's vocabulary under the Llama-3
                         pre-tokenizer ("llama-bpe"), with that vocabulary as vocab.gguf

Usage: tokenizer_reference.py MODEL.gguf DATA_DIR OUT_DIR
"""
import ctypes
import json
import os
import random
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

# Text that exercises the pre-tokenizer and the special-token matcher beyond what prose does.
EDGE_CASES = [
    "", " ", "\n", "   ", "\t", "\r\n", " \n \n", "Hello world", " leading space",
    "trailing space ",
    "  two leading spaces", "a  b   c    d     e", "tabs\tand\nnewlines\n\n\nmore\n",
    "   \n  \t  \n", "it's I'm we'll they've she'd you're don't", "IT'S CAPS'LL 'S 'll",
    "'s at the start", "ends with '", "quote'", "numbers 1234567 3.14159 1,000,000 and 2024-11-27",
    "superscripts ²³ fractions ½¾ arabic-indic ٣٤٥ roman ⅷⅻ", "mixed123abc456def",
    "naïve café Ünïcödé façade coöperate", "日本語のテキストです。", "中文分词测试，标点！",
    "한국어 텍스트", "Ελληνικά κείμενα", "русский текст, ёжик", "עברית", "العربية ١٢٣",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷", "combining e\u0301 a\u0308 n\u0303",
    "nbsp\u00a0here em\u2003space ideographic\u3000space", "zero\u200bwidth\u200djoiner",
    "control \x01\x02 del \x7f bell \x07", "separators \x1c\x1d\x1e\x1f end",
    "line\u2028separator\u2029paragraph\u0085next", "<|im_start|>user\nHi there<|im_end|>\n",
    "text<|endoftext|>more text", "<|im_start|><|im_end|><|endoftext|>", "partial <|im_start",
    "<|im_start|>assistant\n", "<repo_name>x<file_sep>y<filename>z", "< |im_start| >",
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "https://example.com/path?query=1&b=two#frag", "email@example.com $100 @user #tag 50%",
    "!!!???...---***", "((([[[{{{}}}]]])))", "a" * 600, "ab" * 300, " " * 40 + "x",
    "\n" * 12 + "y", "über" * 50, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛", "\U0010fffd private \ue000 use",
]


def random_strings(count, seed=2026):
    """Seeded random mixes of the characters the pre-tokenizers treat differently."""
    pools = [
        "abcXYZ", "0123456789", " ", "  ", "\n", "\r\n", "\t", "'", "'s", "'LL", "'re", "'VE",
        ".,;:!?-()[]{}<>|_/\\\"@#$%^&*+=~`", "éÅñßøŒ", "日本語中文한국", "😀👍🏽🇫🇷",
        "\u0301\u0308", "\u00a0\u2003\u3000\u2028\u0085", "\x1c\x1f\x01", "٣٤½²Ⅻ𝟙",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choice(rng.choice(pools)) if rng.random() < 0.7 else rng.choice(pools)
                    for _ in range(rng.randint(1, 30)))
            for _ in range(count)]


def sample_lines(path, every, count):
    """Every `every`-th non-blank line, `count` of them, plus three multi-line chunks."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    nonblank = [line for line in lines if line.strip()]
    picked = nonblank[::every][:count]
    for start in (100, 2000, 5000):
        picked.append("\n".join(lines[start:start + 25]))
    return picked


# Llama-3's split expression, as its tokenizer.json writes it.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| "
                r"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_pre_tokenizer(pre):
    """Hugging Face's equivalent of a llama.cpp pre-tokenizer name."""
    if pre == "smollm":
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    assert pre == "llama-bpe", pre
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def write_llama3_variant(model_path, out_path):
    """The model's vocabulary and merges under the Llama-3 pre-tokenizer, as a vocab-only GGUF."""
    reader = gguf.GGUFReader(model_path)
    writer = gguf.GGUFWriter(out_path, "llama")
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "tokenizer.ggml.pre"):
            continue
        value_type = field.types[0]
        sub_type = field.types[1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), value_type, sub_type=sub_type)
    writer.add_tokenizer_pre("llama-bpe")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_hf_tokenizer(model_path, out_dir):
    """tokenizer.json and tokenizer_config.json for the GGUF's vocabulary (engine/cpu_engine_test
    uses it too, to build a Hugging Face model directory)."""
    reader = gguf.GGUFReader(model_path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    pre = reader.fields["tokenizer.ggml.pre"].contents()
    vocab = {token: i for i, token in enumerate(tokens)}
    # llama.cpp skips merging words that are vocabulary entries for Llama-3 vocabularies.
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                     ignore_merges=pre == "llama-bpe")
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = hf_pre_tokenizer(pre)
    tokenizer.decoder = decoders.ByteLevel()
    control = gguf.TokenType.CONTROL
    tokenizer.add_special_tokens(
        [AddedToken(tokens[i], special=True, normalized=False)
         for i in range(len(tokens)) if types[i] == control])
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    config = {
        "bos_token": tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()],
        "eos_token": tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()],
        "add_bos_token": bool(reader.fields["tokenizer.ggml.add_bos_token"].contents()),
        "chat_template": reader.fields["tokenizer.chat_template"].contents(),
        "tokenizer_class": "GPT2Tokenizer",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    return tokenizer


def token_piece(vocab, token, special):
    """llama.cpp's bytes of one token (Llama.detokenize cuts pieces at 32 bytes)."""
    import llama_cpp  # here and in main(): write_hf_tokenizer runs where llama.cpp is absent
    buffer = ctypes.create_string_buffer(1024)
    length = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    assert 0 <= length <= len(buffer), (token, length)
    return buffer.raw[:length]


def tokenize_cases(llama, hf, texts, pieces, special_pieces):
    cases = []
    for text in texts:
        for add_bos in (False, True):
            for special in (False, True):
                ids = llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)
                # Hugging Face always matches special tokens and never adds BOS for this model.
                hf_ids = hf.encode(text, add_special_tokens=False).ids \
                    if special and not add_bos else None
                # What llama.cpp decodes the ids to; it differs from the text where the
                # vocabulary lacks a byte's token (SmolLM2 has none for 0x1D).
                decoded = b"".join((special_pieces if special else pieces)[i] for i in ids)
                cases.append({"text": text, "add_bos": add_bos, "special": special,
                              "llama_cpp_ids": ids, "hf_ids": hf_ids,
                              "llama_cpp_decoded_hex": decoded.hex()})
    return cases


def hf_words(hf, text):
    """Hugging Face's pre-tokenizer words of `text`, as slices of the text."""
    return [text[begin:end] for _, (begin, end) in hf.pre_tokenizer.pre_tokenize_str(text)]


def main():
    import llama_cpp
    model_path, data_dir, out_dir = sys.argv[1:4]
    texts = (EDGE_CASES + random_strings(300)
             + sample_lines(os.path.join(data_dir, "wikitext2_valid_tokens.txt"), 23, 250)
             + sample_lines(os.path.join(data_dir, "moby_dick.txt"), 29, 250))
    llama3_dir = os.path.join(out_dir, "llama3")
    os.makedirs(llama3_dir, exist_ok=True)
    llama3_path = os.path.join(llama3_dir, "vocab.gguf")
    write_llama3_variant(model_path, llama3_path)

    llama = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    n_vocab = llama.n_vocab()
    pieces = [token_piece(vocab, i, False) for i in range(n_vocab)]
    special_pieces = [token_piece(vocab, i, True) for i in range(n_vocab)]
    for path, directory in ((model_path, out_dir), (llama3_path, llama3_dir)):
        hf = write_hf_tokenizer(path, directory)
        tokenizer = llama if path == model_path else \
            llama_cpp.Llama(path, vocab_only=True, verbose=False)
        reference = {
            "model": os.path.basename(path),
            "llama_cpp_version": llama_cpp.__version__,
            "cases": tokenize_cases(tokenizer, hf, texts, pieces, special_pieces),
            "pre_tokenized": [{"text": text, "words": hf_words(hf, text)} for text in texts],
        }
        if path == model_path:
            reference.update({
                "n_vocab": n_vocab,
                "bos_id": llama.token_bos(),
                "eos_id": llama.token_eos(),
                "end_of_generation_ids": [i for i in range(n_vocab)
                                          if llama_cpp.llama_vocab_is_eog(vocab, i)],
                # Bytes of every token, without and with special tokens rendered.
                "pieces_hex": [piece.hex() for piece in pieces],
                "special_pieces_hex": [piece.hex() for piece in special_pieces],
            })
        with open(os.path.join(directory, "reference.json"), "w", encoding="utf-8") as f:
            json.dump(reference, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
