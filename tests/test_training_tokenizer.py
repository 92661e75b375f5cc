"""The tiny tokenizer and the compact chat template: TRL's checks pass, calls parse, names copy cleanly."""

from __future__ import annotations

import json

from rl_assets.prompts import initial_messages


def test_compact_template_passes_trls_tool_calling_and_training_checks(tiny_tokenizer):
    from trl.chat_template_utils import (has_generation_markers, is_chat_template_prefix_preserving,
                                         is_chat_template_stop_token_trained, supports_tool_calling)

    assert supports_tool_calling(tiny_tokenizer)
    assert is_chat_template_prefix_preserving(tiny_tokenizer)
    assert has_generation_markers(tiny_tokenizer.chat_template)  # SFT's assistant-only loss needs them
    assert is_chat_template_stop_token_trained(tiny_tokenizer)  # the model learns to end its turn


def test_tools_block_is_one_short_line_per_tool(tiny_tokenizer, snapshot_dir):
    from rl_assets.env import FinQAEnv
    from rl_assets.rollouts import env_tools

    tools = env_tools(FinQAEnv(snapshot=snapshot_dir))
    text = tiny_tokenizer.apply_chat_template(initial_messages("\n\nCompany: x\nQuestion: y"), tools=tools, tokenize=False)
    assert "sql_query(company_name, table_name, query)\n" in text
    assert "get_descriptions(company_name)\n" in text
    assert '"description"' not in text  # no JSON schema
    system = text[: text.index("<|im_end|>")]
    assert len(tiny_tokenizer(system)["input_ids"]) < 250  # the full TRL schema block is ~1,500 tokens


def test_trl_parses_a_generated_tool_call(tiny_tokenizer):
    from trl.chat_template_utils import parse_response

    call = {"name": "get_table_info", "arguments": {"company_name": "vorta_2011", "table_name": "page_12"}}
    completion = f"<tool_call>\n{json.dumps(call)}\n</tool_call><|im_end|>"
    prefix = tiny_tokenizer.apply_chat_template(initial_messages("\n\nCompany: vorta_2011\nQuestion: q"),
                                                add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    message = parse_response(tiny_tokenizer, tiny_tokenizer(completion)["input_ids"], prefix=list(prefix))
    assert message["tool_calls"][0]["function"] == {"name": "get_table_info", "arguments": call["arguments"]}


def test_names_tokenise_the_same_in_the_prompt_and_in_a_call(tiny_tokenizer):
    for name in ("nvidia", "aal_2010", "tatqa_c29582f8", "us_gaap_LeaseCostTableTextBlock"):
        in_prompt = tiny_tokenizer.tokenize(f"Company: {name}\n")
        in_call = tiny_tokenizer.tokenize(f'"company_name": "{name}"}}')
        pieces = tiny_tokenizer.tokenize(name)
        assert any(in_prompt[i:i + len(pieces)] == pieces for i in range(len(in_prompt))), (name, in_prompt)
        assert any(in_call[i:i + len(pieces)] == pieces for i in range(len(in_call))), (name, in_call)


def test_training_company_names_are_spelled_from_pieces(tiny_tokenizer, oracle_conversations):
    vocabulary = set(tiny_tokenizer.get_vocab())
    companies = {t["world_id"] for t, _ in oracle_conversations}
    assert companies
    for company in companies:
        assert company not in vocabulary and len(tiny_tokenizer.tokenize(company)) >= 2
    assert max(len(t) for t in vocabulary if not t.startswith("<")) <= 6  # tiny-test's max_token_length


def test_tokenizer_training_is_deterministic(oracle_conversations, tiny_tokenizer):
    from rl_assets.training.models import tokenizer_corpus
    from rl_assets.training.tiny import train_tokenizer

    corpus = tokenizer_corpus([c for _, c in oracle_conversations], [])
    companies = sorted({t["world_id"] for t, _ in oracle_conversations})
    first = train_tokenizer(corpus, 600, 6, forbidden_words=companies)
    second = train_tokenizer(corpus, 600, 6, forbidden_words=companies)
    assert first.get_vocab() == second.get_vocab()
