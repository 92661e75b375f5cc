"""A scripted OpenAI-compatible chat-completions server for tests (stdlib only), run as its own process:

    python tests/chat_server.py [--answers answers.json]     # prints "PORT <n>" once listening on 127.0.0.1

POST /v1/chat/completions answers deterministically from the conversation so far; the model name picks
the script:
    solver          get_descriptions -> get_table_info (first listed table) -> sql_query -> submit_answer
                    (the answer for the question from --answers, else "0"); replies in text if the request
                    does not offer the five FinQA tools
    silent          answers in text, never calls a tool
    garbage         emits non-text noise, no tool call
    bad-arguments   calls get_descriptions with arguments that are not JSON, every turn
    wrong-company   calls get_descriptions for a company that does not exist, every turn
    unparsable      lists the tables, then submits "I do not know"
    http-500        fails with HTTP 500
    not-json        replies 200 with a body that is not JSON
Usage is counted as characters / 4 so token totals are deterministic.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPECTED_TOOLS = {"get_descriptions", "get_table_info", "sql_query", "calculator", "submit_answer"}
ANSWERS: dict[str, str] = {}


def _company_and_question(messages: list[dict]) -> tuple[str, str]:
    text = "\n".join(m.get("content") or "" for m in messages if m.get("role") == "user")
    company = re.search(r"Company: (.+)", text)
    question = re.search(r"Question: (.+)", text)
    return (company.group(1).strip() if company else ""), (question.group(1).strip() if question else "")


def _call(turn: int, name: str, arguments: dict | str) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{turn}", "type": "function", "function": {"name": name, "arguments": args}}


def _solver(messages: list[dict], tools: set[str]) -> dict:
    if tools != EXPECTED_TOOLS:
        return {"content": f"I was offered the tools {sorted(tools)}, not the FinQA tools."}
    company, question = _company_and_question(messages)
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    last_tool = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "tool"), "")
    if turn == 0:
        return {"tool_calls": [_call(turn, "get_descriptions", {"company_name": company})]}
    if turn == 1:
        listed = json.loads(last_tool)
        first = listed[0]["table_name"] if isinstance(listed[0], dict) else listed[0]
        return {"tool_calls": [_call(turn, "get_table_info", {"company_name": company, "table_name": first})]}
    if turn == 2:
        info = json.loads(last_tool)
        column = info["row_label_column"]
        query = f'SELECT "{column}" FROM "{info["table_name"]}" LIMIT 1'
        return {"tool_calls": [_call(turn, "sql_query", {"company_name": company, "table_name": info["table_name"],
                                                         "query": query})]}
    return {"tool_calls": [_call(turn, "submit_answer", {"answer": ANSWERS.get(question, "0")})]}


def reply(model: str, messages: list[dict], tools: set[str]) -> dict:
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    company, _ = _company_and_question(messages)
    if model == "solver":
        return _solver(messages, tools)
    if model == "silent":
        return {"content": "The answer is probably around five percent."}
    if model == "garbage":
        return {"content": "\u0298\u203f\u0298 ~~%%% <tool_cal {{{{ \u2603\u2603"}
    if model == "bad-arguments":
        return {"tool_calls": [_call(turn, "get_descriptions", "{company_name: " + company)]}
    if model == "wrong-company":
        return {"tool_calls": [_call(turn, "get_descriptions", {"company_name": "no_such_company_inc"})]}
    if model == "unparsable":
        if turn == 0:
            return {"tool_calls": [_call(turn, "get_descriptions", {"company_name": company})]}
        return {"tool_calls": [_call(turn, "submit_answer", {"answer": "I do not know"})]}
    raise KeyError(model)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        model = request.get("model", "")
        if model == "http-500":
            return self._send(500, json.dumps({"error": {"message": "scripted failure", "type": "server_error"}}).encode())
        if model == "not-json":
            return self._send(200, b"<html>this is not a chat completion</html>", "text/html")
        messages = request.get("messages", [])
        tools = {t["function"]["name"] for t in request.get("tools") or []}
        try:
            message = reply(model, messages, tools)
        except KeyError:
            return self._send(404, json.dumps({"error": {"message": f"model {model!r} not found"}}).encode())
        calls = message.get("tool_calls")
        out = {"role": "assistant", "content": message.get("content"), **({"tool_calls": calls} if calls else {})}
        prompt_tokens = len(json.dumps(messages)) // 4
        completion_tokens = max(1, len(json.dumps(out)) // 4)
        body = {
            "id": f"chatcmpl-{len(messages)}", "object": "chat.completion", "created": 0, "model": f"scripted-{model}",
            "choices": [{"index": 0, "message": out, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        self._send(200, json.dumps(body).encode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", help="JSON object: question -> answer (for the solver)")
    args = parser.parse_args()
    if args.answers:
        ANSWERS.update(json.load(open(args.answers)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
