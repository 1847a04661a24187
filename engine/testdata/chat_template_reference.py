#!/usr/bin/env python3
"""Reference chat prompts for engine/chat_template_test: conversations rendered by the real Jinja
templates through llama-cpp-python's Jinja2ChatFormatter (jinja2, as Hugging Face renders them).

Templates: the default model's own tokenizer.chat_template (ChatML with a default system turn)
and Meta-Llama-3-Instruct's published template.

Usage: chat_template_reference.py MODEL.gguf OUT.json
"""
import json
import sys

import gguf
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

CONVERSATIONS = [
    [("user", "Hello!")],
    [("system", "You are terse."), ("user", "What is 2+2?")],
    [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me a joke.")],
    [("user", "  spaced content \n\n")],
    [("user", "\u3000\u00a0 unicode spaces \u2003")],
    [("user", "日本語で答えて 😀")],
    [("system", ""), ("user", "")],
    [("user", "line one\nline two\n\nline four")],
    [("assistant", "I speak first."), ("user", "Fine.")],
    [("tool", "{\"result\": 42}"), ("user", "Use it.")],
    [("user", "Call me Ishmael. Some years ago--never mind how long precisely--having little "
              "or no money in my purse, and nothing particular to interest me on shore, I "
              "thought I would sail about a little and see the watery part of the world.")],
]


def main():
    model_path, out_path = sys.argv[1:3]
    reader = gguf.GGUFReader(model_path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    templates = {
        "gguf": (reader.fields["tokenizer.chat_template"].contents(), bos, eos),
        "llama3": (LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
    }
    cases = []
    for name, (template, bos_token, eos_token) in templates.items():
        for add_generation_prompt in (True, False):
            formatter = Jinja2ChatFormatter(template, eos_token, bos_token, add_generation_prompt)
            for conversation in CONVERSATIONS:
                messages = [{"role": role, "content": content} for role, content in conversation]
                cases.append({"template": name, "add_generation_prompt": add_generation_prompt,
                              "messages": messages,
                              "prompt": formatter(messages=messages).prompt})
    reference = {"templates": {name: {"source": source, "bos_token": bos_token}
                               for name, (source, bos_token, _) in templates.items()},
                 "cases": cases}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
