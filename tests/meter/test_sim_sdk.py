"""The official anthropic and openai SDKs, pointed at the simulator over plain HTTP, read its
answers (JSON and streamed) without error, and the usage they report follows the documented rule."""

from __future__ import annotations

import math
from collections.abc import Iterator

import anthropic
import openai
import pytest

from meter.sim import SimHandle, start_sim
from meter.sim_plan import INPUT_OVERHEAD_TOKENS

OUTPUT_DEFAULT = 12
PROMPT = "How many tokens does this prompt cost?"


def rule(*texts: str) -> int:
    return INPUT_OVERHEAD_TOKENS + sum(math.ceil(len(t) / 4) for t in texts)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with start_sim(output_tokens=OUTPUT_DEFAULT) as handle:
        yield handle


@pytest.fixture
def claude(sim: SimHandle) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


@pytest.fixture
def gpt(sim: SimHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="sk-test", max_retries=0) as client:
        yield client


MESSAGES: list[anthropic.types.MessageParam] = [{"role": "user", "content": PROMPT}]


def test_anthropic_json(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-sim", max_tokens=100, system="terse", messages=MESSAGES)
    assert message.usage.input_tokens == rule("terse", PROMPT)
    assert message.usage.output_tokens == OUTPUT_DEFAULT
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-sim"
    assert message.id.startswith("msg_")
    assert message._request_id is not None and message._request_id.startswith("req_")
    [block] = message.content
    assert block.type == "text"
    assert len(block.text.split()) == OUTPUT_DEFAULT


def test_anthropic_max_tokens_honoured(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-sim", max_tokens=3, messages=MESSAGES)
    assert message.usage.output_tokens == 3
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text"
    assert len(message.content[0].text.split()) == 3


def test_anthropic_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-sim", max_tokens=5, messages=MESSAGES) as stream:
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) == 5
    assert final.content[0].type == "text"
    assert "".join(deltas) == final.content[0].text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (rule(PROMPT), 5)
    assert final.stop_reason == "max_tokens"


def test_anthropic_raw_stream_event_sequence(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model="claude-sim", max_tokens=2, messages=MESSAGES, stream=True))
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK consumes ping events itself


@pytest.mark.asyncio
async def test_anthropic_async_stream(sim: SimHandle) -> None:
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="k", max_retries=0)
    async with client, client.messages.stream(model="claude-sim", max_tokens=50, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    assert final.usage.output_tokens == OUTPUT_DEFAULT


def test_openai_chat_json(gpt: openai.OpenAI) -> None:
    completion = gpt.chat.completions.create(
        model="gpt-sim",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": PROMPT}],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == rule("terse", PROMPT)
    assert completion.usage.completion_tokens == OUTPUT_DEFAULT
    assert completion.usage.total_tokens == rule("terse", PROMPT) + OUTPUT_DEFAULT
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.choices[0].finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert completion._request_id is not None and completion._request_id.startswith("req_")


def test_openai_chat_max_tokens_honoured(gpt: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
    legacy = gpt.chat.completions.create(model="gpt-sim", messages=messages, max_tokens=4)
    current = gpt.chat.completions.create(model="gpt-sim", messages=messages, max_completion_tokens=5)
    for completion, cap in ((legacy, 4), (current, 5)):
        assert completion.usage is not None
        assert completion.usage.completion_tokens == cap
        assert completion.choices[0].finish_reason == "length"
        assert len((completion.choices[0].message.content or "").split()) == cap


def test_openai_chat_stream_with_usage(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="gpt-sim",
            messages=[{"role": "user", "content": PROMPT}],
            max_completion_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *content, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (rule(PROMPT), 6)
    assert all(c.usage is None for c in content)
    assert len("".join(c.choices[0].delta.content or "" for c in content).split()) == 6
    assert content[-1].choices[0].finish_reason == "length"


def test_openai_chat_stream_without_usage_has_no_usage_chunk(gpt: openai.OpenAI) -> None:
    chunks = list(
        gpt.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_chat_stream_helper(gpt: openai.OpenAI) -> None:
    with gpt.chat.completions.stream(
        model="gpt-sim",
        messages=[{"role": "user", "content": PROMPT}],
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    assert final.usage is not None
    assert final.usage.completion_tokens == OUTPUT_DEFAULT
    assert len((final.choices[0].message.content or "").split()) == OUTPUT_DEFAULT


def test_openai_responses_json(gpt: openai.OpenAI) -> None:
    response = gpt.responses.create(model="gpt-sim", instructions="terse", input=PROMPT)
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        rule("terse", PROMPT),
        OUTPUT_DEFAULT,
    )
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.status == "completed"
    assert len(response.output_text.split()) == OUTPUT_DEFAULT


def test_openai_responses_stream_helper(gpt: openai.OpenAI) -> None:
    with gpt.responses.stream(model="gpt-sim", input=[{"role": "user", "content": PROMPT}]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) == OUTPUT_DEFAULT
    assert "".join(deltas) == final.output_text
    assert final.usage is not None
    assert final.usage.input_tokens == rule(PROMPT)


def test_openai_responses_stream_cut_by_max_output_tokens(gpt: openai.OpenAI) -> None:
    """Like the real API: the stream ends with ``response.incomplete`` carrying the usage."""
    events = list(gpt.responses.create(model="gpt-sim", input=PROMPT, max_output_tokens=3, stream=True))
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.usage is not None
    assert last.response.usage.output_tokens == 3
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert [e.sequence_number for e in events] == list(range(len(events)))
