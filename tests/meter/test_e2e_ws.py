"""End to end over WebSocket, for real: `bbnet meter run` in a subprocess, the official openai SDK's
WebSocket clients (``client.responses.connect`` — the Responses API's WebSocket mode, Codex CLI's
transport — and ``client.realtime.connect``) and a raw ``websockets`` client for what the SDK
would not send, all over TLS through the proxy trusting its CA, the simulator upstream.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import ssl
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from meter import ws
from meter.sim import SimHandle
from meter.sim_realtime import AUDIO_BYTES_PER_TOKEN
from tests.meter.e2e import MeterProxy, launch_proxy, running_proxies, wait_for

OPENAI_KEY = "sk-proj-ws" + secrets.token_hex(16)
AZURE_KEY = secrets.token_hex(16)
AZURE_HOST = "bbnet-e2e.openai.azure.com"
PROMPT = "Say something about budgets over a socket."
SLOW_HOST = "slow.openai.azure.com"  # the proxy sends this Azure resource to the slow simulator
_addresses = itertools.count(100)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("meter-ws") / "ledger.db") as opened:
        yield opened


@pytest.fixture(scope="module")
def meter(ledger: Ledger, sim: SimHandle, slow_sim: SimHandle) -> Iterator[MeterProxy]:
    proxy = launch_proxy(
        ledger.path.parent / "meter", ledger.path, [f"{SLOW_HOST}={slow_sim.url}", f"*={sim.url}"]
    )
    with running_proxies(proxy):
        yield proxy


def new_bottle(ledger: Ledger, budget: int | None = None) -> Bottle:
    n = next(_addresses)
    bottle = ledger.add_bottle(Bottle(f"ws-{n}", addresses=(f"127.0.0.{n}/32",)))
    if budget is not None:
        ledger.set_budget(Budget(Scope.parse(f"bottle:{bottle.name}"), "*", "tokens", budget))
    return bottle


def options(proxy: MeterProxy, bottle: Bottle) -> Any:
    """``websockets`` connect options: through the proxy, trusting its CA, from the bottle's address
    (the SDK passes them on to ``websockets.sync.client.connect`` as they are)."""
    source = bottle.addresses[0].split("/", 1)[0]
    return {
        "proxy": proxy.url,
        "ssl": ssl.create_default_context(cafile=proxy.ca),
        "source_address": (source, 0),
    }


def gpt() -> openai.OpenAI:
    return openai.OpenAI(api_key=OPENAI_KEY, max_retries=0)


def raw_socket(proxy: MeterProxy, bottle: Bottle, url: str) -> ClientConnection:
    return connect(url, additional_headers={"authorization": f"Bearer {OPENAI_KEY}"}, open_timeout=20,
                   **options(proxy, bottle))  # fmt: skip


def until(events: Iterator[Any], *types: str) -> list[Any]:
    """Events up to and including the first of ``types``."""
    seen = []
    for event in events:
        seen.append(event)
        if event.type in types:
            return seen
    raise AssertionError(f"the socket ended before any of {types}: {[e.type for e in seen]}")


def recv_json(sock: Connection) -> dict[str, Any]:
    doc = json.loads(sock.recv(timeout=20))
    assert isinstance(doc, dict)
    return doc


def holds(ledger: Ledger, bottle: Bottle) -> list[dict[str, object]]:
    return [r for r in ledger.reservations() if r["bottle"] == bottle.name]


def rows(ledger: Ledger, bottle: Bottle, n: int) -> list[dict[str, Any]]:
    found = wait_for(
        lambda: len(ledger.usage(bottle=bottle.name)) >= n and ledger.usage(bottle=bottle.name), 20
    )
    assert found and len(found) == n, found
    return [dict(r) for r in found]


FINISHED = ("response.completed", "response.incomplete", "response.failed", "error")


# -- Responses WebSocket mode ----------------------------------------------------------------------


def test_responses_socket_usage_rows(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    before = sim.stats()["total"]
    usages = []
    with gpt().responses.connect(websocket_connection_options=options(meter, bottle)) as conn:
        for cap in (5, 40):
            conn.response.create(model="gpt-sim", input=PROMPT, max_output_tokens=cap)
            last = until(iter(conn), *FINISHED)[-1]
            assert last.type in ("response.completed", "response.incomplete"), last
            usages.append(last.response.usage)
    assert sim.stats()["total"] - before == 2  # the simulator counts WebSocket requests too
    got = rows(ledger, bottle, 2)
    assert [(r["input_tokens"], r["output_tokens"]) for r in got] == [
        (u.input_tokens, u.output_tokens) for u in usages
    ]
    assert [u.output_tokens for u in usages] == [5, 16]  # the cap, then the simulator's default
    for row in got:
        assert (row["provider"], row["family"], row["host"], row["path"]) == (
            "openai", "openai-responses", "api.openai.com", "/v1/responses")  # fmt: skip
        assert (row["estimated"], row["stream"], row["model"], row["status"]) == (0, 1, "gpt-sim", 200)
    assert holds(ledger, bottle) == []


def test_deny_is_an_error_event_and_the_socket_stays_usable(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger
) -> None:
    bottle = new_bottle(ledger, budget=5)  # below any input estimate
    with gpt().responses.connect(websocket_connection_options=options(meter, bottle)) as conn:
        before = sim.stats()["total"]
        conn.response.create(model="gpt-sim", input=PROMPT, max_output_tokens=50)
        [error] = until(iter(conn), *FINISHED)
        assert sim.stats()["total"] == before  # never forwarded
        assert error.type == "error" and error.status == 429
        assert error.error.code == "budget_denied"
        extra = error.model_extra or {}
        assert (extra["bbnet_code"], extra["scope"], extra["limit"], extra["used"]) == (
            "BUDGET_DENIED", f"bottle:{bottle.name}", 5, 0)  # fmt: skip
        assert holds(ledger, bottle) == [] and ledger.usage(bottle=bottle.name) == []
        ledger.set_budget(Budget(Scope.parse(f"bottle:{bottle.name}"), "*", "tokens", 100_000))
        conn.response.create(model="gpt-sim", input=PROMPT, max_output_tokens=3)
        last = until(iter(conn), *FINISHED)[-1]
    assert last.type == "response.incomplete" and last.response.usage.output_tokens == 3
    assert sim.stats()["total"] == before + 1
    [row] = rows(ledger, bottle, 1)
    assert row["output_tokens"] == 3


def test_degrade_lowers_the_cap_the_sim_sees(meter: MeterProxy, ledger: Ledger) -> None:
    message = {"type": "response.create", "model": "gpt-sim", "input": PROMPT, "max_output_tokens": 200}
    endpoint = ws.endpoint("api.openai.com", "/v1/responses")
    assert endpoint is not None
    reading, _ = ws.read_client(endpoint, ws.Session(None), json.dumps(message).encode(), True)
    assert isinstance(reading, ws.Create)
    allowed = 7
    bottle = new_bottle(ledger, budget=reading.plan.input_tokens + allowed)
    with gpt().responses.connect(websocket_connection_options=options(meter, bottle)) as conn:
        conn.response.create(model="gpt-sim", input=PROMPT, max_output_tokens=200)
        last = until(iter(conn), *FINISHED)[-1]
    assert last.type == "response.incomplete"
    assert last.response.max_output_tokens == allowed  # what the simulator was asked for
    assert last.response.usage.output_tokens == allowed
    [row] = rows(ledger, bottle, 1)
    assert row["output_tokens"] == allowed


def test_disconnect_mid_response_leaves_no_reservation(
    meter: MeterProxy, slow_sim: SimHandle, ledger: Ledger
) -> None:
    bottle = new_bottle(ledger)
    sock = raw_socket(meter, bottle, f"wss://{SLOW_HOST}/openai/v1/responses")
    with sock:
        sock.send(json.dumps({"type": "response.create", "model": "gpt-sim", "input": PROMPT}))
        assert recv_json(sock)["type"] == "response.created"
        assert len(holds(ledger, bottle)) == 1  # in flight: the response holds its reservation
    assert wait_for(lambda: holds(ledger, bottle) == [], timeout=20)
    assert ledger.usage(bottle=bottle.name) == []  # nothing was billed: released, not committed
    assert slow_sim.stats()["by_path"].get("/openai/v1/responses") == 1


def test_cutoff_bottle_socket_is_closed(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    sock = raw_socket(meter, bottle, "wss://api.openai.com/v1/responses")
    with sock:
        ledger.set_desired_state(bottle.name, "cutoff", "e2e test", "test")
        before = sim.stats()["total"]
        sock.send(json.dumps({"type": "response.create", "model": "gpt-sim", "input": PROMPT}))
        error = recv_json(sock)  # why, then the close
        with pytest.raises(ConnectionClosed):
            sock.recv(timeout=20)
    assert (error["type"], error["bbnet_code"]) == ("error", "BUDGET_DENIED")
    assert f"bottle {bottle.name} is cutoff" in error["error"]["message"]
    assert sim.stats()["total"] == before
    assert holds(ledger, bottle) == [] and ledger.usage(bottle=bottle.name) == []
    with pytest.raises(InvalidStatus) as refused:  # a new socket is refused at the upgrade
        raw_socket(meter, bottle, "wss://api.openai.com/v1/responses")
    assert refused.value.response.status_code == 429


def test_malformed_messages_refused_connection_intact(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger
) -> None:
    bottle = new_bottle(ledger)
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/responses") as sock:
        before = sim.stats()["total"]
        for bad, why in (('{"type": "response.create", "input": ', "not valid JSON"),
                         ("[1, 2]", "JSON list"), ('{"input": "x"}', 'no "type"')):  # fmt: skip
            sock.send(bad)
            error = recv_json(sock)
            assert (error["type"], error["status"], error["bbnet_code"]) == ("error", 400, "BAD_MESSAGE")
            assert why in error["error"]["message"]
        sock.send(b"\x00\x01binary")  # not a request: passed through, the simulator ignores it
        sock.send(
            json.dumps(
                {"type": "response.create", "model": "gpt-sim", "input": PROMPT, "max_output_tokens": 2}
            )
        )
        events = [recv_json(sock)]
        while events[-1]["type"] not in FINISHED:
            events.append(recv_json(sock))
    assert events[-1]["type"] == "response.incomplete"
    assert sim.stats()["total"] == before + 1
    [row] = rows(ledger, bottle, 1)
    assert row["output_tokens"] == 2
    stderr = meter.stderr()
    assert "refused a WebSocket message" in stderr
    assert OPENAI_KEY not in stderr


def test_provider_error_releases_the_reservation(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/responses") as sock:
        sock.send(json.dumps({"type": "response.create", "input": PROMPT}))  # the simulator wants a model
        error = recv_json(sock)
        assert error["type"] == "error" and "model" in error["error"]["message"]
        assert "bbnet_code" not in error  # the provider's own refusal, passed through
        assert wait_for(lambda: holds(ledger, bottle) == [], timeout=20)  # released with the socket open
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/realtime?model=gpt-realtime") as sock:
        assert recv_json(sock)["type"] == "session.created"
        sock.send(
            json.dumps(
                {"type": "response.create", "event_id": "evt_zero", "response": {"max_output_tokens": 0}}
            )
        )
        error = recv_json(sock)
        assert (error["type"], error["error"]["event_id"]) == ("error", "evt_zero")
        assert wait_for(lambda: holds(ledger, bottle) == [], timeout=20)
    assert ledger.usage(bottle=bottle.name) == []


def test_unknown_source_upgrade_refused(meter: MeterProxy, sim: SimHandle) -> None:
    stranger = Bottle("not-registered", addresses=("127.0.0.3/32",))
    with pytest.raises(InvalidStatus) as refused:
        raw_socket(meter, stranger, "wss://api.openai.com/v1/responses")
    assert refused.value.response.status_code == 403


def test_unmetered_socket_on_an_llm_host_is_refused(meter: MeterProxy, ledger: Ledger) -> None:
    """A WebSocket the meter does not read, on an LLM host: the egress policy refuses the upgrade
    (403 UNMETERED, never forwarded) unless a rule says ``unmetered: allow`` (test_e2e_egress)."""
    bottle = new_bottle(ledger)
    with pytest.raises(InvalidStatus) as refused:
        raw_socket(meter, bottle, "wss://api.anthropic.com/v1/some-socket?key=not-logged")
    assert refused.value.response.status_code == 403
    assert b"UNMETERED" in refused.value.response.body
    line = f"refused bottle={bottle.name} host=api.anthropic.com code=UNMETERED GET /v1/some-socket"
    assert wait_for(lambda: line in meter.stderr())
    assert "not-logged" not in meter.stderr()


def test_broken_ledger_refuses_the_upgrade(ledger: Ledger, sim: SimHandle) -> None:
    not_a_file = ledger.path.parent / "not-a-ledger"
    not_a_file.mkdir()
    proxy = launch_proxy(ledger.path.parent / "closed", not_a_file, [f"*={sim.url}"])
    with running_proxies(proxy), pytest.raises(InvalidStatus) as refused:
        raw_socket(proxy, new_bottle(ledger), "wss://api.openai.com/v1/responses")
    assert refused.value.response.status_code == 503
    assert b"BUDGET_CONFIG" in refused.value.response.body


# -- Realtime ----------------------------------------------------------------------------------------


def test_realtime_usage_with_audio_and_cache(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    audio = base64.b64encode(bytes(3 * AUDIO_BYTES_PER_TOKEN)).decode()
    usages = []
    before = sim.stats()["total"]
    with gpt().realtime.connect(
        model="gpt-realtime", websocket_connection_options=options(meter, bottle)
    ) as rt:
        rt.session.update(
            session={"type": "realtime", "output_modalities": ["audio"], "instructions": "Be brief."}
        )
        rt.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}
        )
        rt.input_audio_buffer.append(audio=audio)
        for cap in (4, 6):
            rt.response.create(response={"max_output_tokens": cap})
            done = until(iter(rt), "response.done", "error")[-1]
            assert done.type == "response.done", done
            usages.append(done.response.usage)
    assert sim.stats()["total"] - before == 2
    first, second = usages
    assert first.input_token_details.audio_tokens == 3 and first.output_token_details.audio_tokens > 0
    assert second.input_token_details.cached_tokens == first.input_tokens  # the conversation prefix
    got = rows(ledger, bottle, 2)
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"]) for r in got] == [
        (u.input_tokens, u.output_tokens, u.input_token_details.cached_tokens) for u in usages
    ]
    assert {(r["family"], r["model"], r["path"]) for r in got} == {
        ("openai-realtime", "gpt-realtime", "/v1/realtime")
    }
    assert holds(ledger, bottle) == []


def test_azure_realtime_key_in_query_never_logged(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    url = f"wss://{AZURE_HOST}/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-realtime&api-key={AZURE_KEY}"
    with raw_socket(meter, bottle, url) as sock:
        assert recv_json(sock)["type"] == "session.created"
        sock.send(
            json.dumps({"type": "response.create", "event_id": "evt_1", "response": {"max_output_tokens": 3}})
        )
        done = recv_json(sock)
        while done["type"] != "response.done":
            done = recv_json(sock)
    [row] = rows(ledger, bottle, 1)
    assert (row["provider"], row["host"], row["model"]) == ("azure", AZURE_HOST, "gpt-realtime")
    assert row["output_tokens"] == done["response"]["usage"]["output_tokens"] == 3
    assert AZURE_KEY not in meter.stderr() and OPENAI_KEY not in meter.stderr()


def test_realtime_deny_names_the_client_event(meter: MeterProxy, sim: SimHandle, ledger: Ledger) -> None:
    bottle = new_bottle(ledger, budget=2)  # below the smallest input estimate
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/realtime?model=gpt-realtime") as sock:
        assert recv_json(sock)["type"] == "session.created"
        before = sim.stats()["total"]
        sock.send(json.dumps({"type": "response.create", "event_id": "evt_deny"}))
        error = recv_json(sock)
        assert sim.stats()["total"] == before
        assert (error["type"], error["error"]["event_id"], error["bbnet_code"]) == (
            "error",
            "evt_deny",
            "BUDGET_DENIED",
        )
        sock.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))  # still open
        sock.ping().wait(timeout=20)
    assert holds(ledger, bottle) == [] and ledger.usage(bottle=bottle.name) == []


def vad_turn(sock: Connection) -> dict[str, Any]:
    """Turn detection on, some audio, commit: the server starts a response on its own."""
    assert recv_json(sock)["type"] == "session.created"
    turn_detection = {"type": "server_vad"}
    sock.send(
        json.dumps(
            {"type": "session.update", "session": {"audio": {"input": {"turn_detection": turn_detection}}}}
        )
    )
    sock.send(
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(9600)).decode()})
    )
    sock.send(json.dumps({"type": "input_audio_buffer.commit"}))
    done = recv_json(sock)
    while done["type"] != "response.done":
        done = recv_json(sock)
    return done


def test_realtime_server_started_response_is_metered(meter: MeterProxy, ledger: Ledger) -> None:
    bottle = new_bottle(ledger)
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/realtime?model=gpt-realtime") as sock:
        done = vad_turn(sock)
        sock.ping().wait(timeout=20)  # still open
    usage = done["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 2
    [row] = rows(ledger, bottle, 1)
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (
        usage["input_tokens"], usage["output_tokens"], 0)  # fmt: skip
    assert holds(ledger, bottle) == []


def test_realtime_server_started_response_over_budget_closes(meter: MeterProxy, ledger: Ledger) -> None:
    bottle = new_bottle(ledger, budget=2)
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/realtime?model=gpt-realtime") as sock:
        done = vad_turn(sock)  # it cannot be stopped on the way: metered to its end
        error = recv_json(sock)
        with pytest.raises(ConnectionClosed):
            sock.recv(timeout=20)
    assert (error["type"], error["bbnet_code"], error["scope"]) == (
        "error",
        "BUDGET_DENIED",
        f"bottle:{bottle.name}",
    )
    [row] = rows(ledger, bottle, 1)
    assert row["output_tokens"] == done["response"]["usage"]["output_tokens"]
    assert holds(ledger, bottle) == []


def test_realtime_degrade_lowers_the_cap_the_sim_sees(meter: MeterProxy, ledger: Ledger) -> None:
    params = {"max_output_tokens": 50, "instructions": "Answer at length."}
    endpoint = ws.endpoint("api.openai.com", "/v1/realtime?model=gpt-realtime")
    assert endpoint is not None
    allowed = 2
    bottle = new_bottle(
        ledger, budget=ws.realtime_plan(endpoint, ws.Session("gpt-realtime"), params).input_tokens + allowed
    )
    with raw_socket(meter, bottle, "wss://api.openai.com/v1/realtime?model=gpt-realtime") as sock:
        assert recv_json(sock)["type"] == "session.created"
        sock.send(json.dumps({"type": "response.create", "response": params}))
        done = recv_json(sock)
        while done["type"] != "response.done":
            done = recv_json(sock)
    assert done["response"]["max_output_tokens"] == allowed  # what the simulator was asked for
    assert done["response"]["usage"]["output_tokens"] == allowed
    [row] = rows(ledger, bottle, 1)
    assert row["output_tokens"] == allowed


def test_chatgpt_backend_socket_is_admitted_whole_or_not(meter: MeterProxy, ledger: Ledger) -> None:
    message = {"type": "response.create", "model": "gpt-sim", "input": PROMPT, "max_output_tokens": 200}
    endpoint = ws.endpoint("chatgpt.com", "/backend-api/codex/responses")
    assert endpoint is not None
    reading, _ = ws.read_client(endpoint, ws.Session(None), json.dumps(message).encode(), True)
    assert isinstance(reading, ws.Create)
    bottle = new_bottle(ledger, budget=reading.plan.input_tokens + 7)  # DEGRADE room elsewhere
    with raw_socket(meter, bottle, "wss://chatgpt.com/backend-api/codex/responses") as sock:
        sock.send(json.dumps(message))
        error = recv_json(sock)  # the backend refuses max_output_tokens: no DEGRADE, a DENY
        assert (error["type"], error["bbnet_code"]) == ("error", "BUDGET_DENIED")
        ledger.set_budget(Budget(Scope.parse(f"bottle:{bottle.name}"), "*", "tokens", 100_000))
        sock.send(json.dumps({**message, "max_output_tokens": 3}))
        done = recv_json(sock)
        while done["type"] not in FINISHED:
            done = recv_json(sock)
    [row] = rows(ledger, bottle, 1)
    assert (row["provider"], row["path"], row["output_tokens"]) == (
        "chatgpt",
        "/backend-api/codex/responses",
        3,
    )
