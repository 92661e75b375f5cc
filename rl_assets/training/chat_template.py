"""The compact chat template: TRL's Qwen3-Instruct-2507 *training* template (prefix-preserving, with
`{% generation %}` markers for assistant-only loss) whose tools block is one short line per tool.

TRL's own template renders every tool's full JSON schema into the system message: with FinQAEnv's five
tools that is ~1,500 tokens before the question, more than a tiny model's whole episode. The compact
block keeps the call format and names each tool with its arguments:

    # Tools
    One call per turn: <tool_call>
    {"name": <tool>, "arguments": {<argument>: <value>}}
    </tool_call>
    get_descriptions(company_name)
    ...

One addition: an assistant message marked `"mistake": True` (a recovery demonstration's wrong call,
rl_assets.training.trajectories) renders the same text outside the `{% generation %}` markers, so SFT's
assistant-only loss shows it as context and does not train on it; a message without the key renders as before.

Everything else (assistant tool calls, `<tool_response>` blocks) renders exactly as TRL's template, so
TRL's tool-calling and prefix-preservation checks pass and TRL's Qwen3 response parser
(`trl.chat_template_utils.qwen3_template`) parses the calls. Because the template is not byte-identical
to a known one, TRL cannot recognise it: `attach_compact_template` sets the response parser itself.
"""

from __future__ import annotations

from pathlib import Path

TOOLS_BLOCK_START = "{%- if tools %}"
TOOLS_BLOCK_END = "{%- else %}"

COMPACT_TOOLS_BLOCK = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- '# Tools\\nOne call per turn: <tool_call>\\n{"name": <tool>, "arguments": {<argument>: <value>}}\\n</tool_call>\\n' }}
    {%- for tool in tools %}
        {%- set fn = tool.function if tool.function is defined else tool %}
        {{- fn.name + '(' + (fn.parameters.properties | list | join(', ')) + ')\\n' }}
    {%- endfor %}
    {{- '<|im_end|>\\n' }}
"""


def trl_training_template() -> str:
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / "qwen3_instruct_2507_training.jinja"
    return path.read_text(encoding="utf-8")


GENERATION_START = "{%- generation %}"
GENERATION_END = "{%- endgeneration %}"
# the assistant message's text is captured once, then written inside the generation markers or, for a mistake, outside
UNTRAINED_MISTAKE = ("{%- endset %}\n        {%- if message.mistake %}{{- assistant_text }}{%- else %}"
                     "{%- generation %}{{- assistant_text }}{%- endgeneration %}{%- endif %}")


def compact_chat_template() -> str:
    """TRL's Qwen3-Instruct-2507 training template with the tools block replaced by one line per tool and mistake
    turns rendered outside the generation markers (module docstring)."""
    template = trl_training_template()
    start = template.find(TOOLS_BLOCK_START)
    end = template.find(TOOLS_BLOCK_END, start)
    if start < 0 or end < 0 or template.count(GENERATION_START) != 1 or template.count(GENERATION_END) != 1:
        raise ValueError(
            "trl's qwen3_instruct_2507_training.jinja no longer has the expected '{%- if tools %} ... {%- else %}' "
            "tools block and one '{%- generation %}' block; update rl_assets/training/chat_template.py for this "
            "TRL version"
        )
    template = template[:start] + COMPACT_TOOLS_BLOCK + template[end:]
    return (template.replace(GENERATION_START, "{%- set assistant_text %}")
            .replace(GENERATION_END, UNTRAINED_MISTAKE))


def attach_compact_template(tokenizer):
    """Give `tokenizer` the compact template and TRL's Qwen3 response parser (returns the tokenizer)."""
    from trl.chat_template_utils import qwen3_template

    tokenizer.chat_template = compact_chat_template()
    tokenizer.response_template = qwen3_template
    return tokenizer


def tool_suffix_ids(tokenizer, tool_messages: list[dict]) -> list[int]:
    """The tokens that follow an assistant turn's end-of-turn token when its tool results come back: the tool
    messages and the next assistant header, exactly as TRL's GRPOTrainer appends them (`_get_tool_suffix_ids`):
    the next turn's prompt is the previous prompt + the generated ids + these, so a conversation's token ids
    only ever grow at the end (what lets rl_assets.training.decoding reuse each episode's KV cache)."""
    dummy = [{"role": "user", "content": "dummy"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"type": "function", "function": {"name": tool_messages[0]["name"], "arguments": {}}}]}]
    prefix = tokenizer.apply_chat_template(dummy, add_generation_prompt=False, tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(dummy + tool_messages, add_generation_prompt=True, tokenize=True,
                                         return_dict=False)
    ends = [i for i, token in enumerate(prefix) if token == tokenizer.eos_token_id]
    if ends:
        prefix = prefix[: ends[-1] + 1]
    if full[: len(prefix)] != prefix:
        raise ValueError("the chat template does not preserve the prefix when tool results are appended")
    return list(full[len(prefix):])
