"""``bbnet sim``: run the provider simulator in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from bbnet.clikit import CliError, parse_listen
from meter.sim_plan import DEFAULT_OUTPUT_TOKENS


def sim(
    listen: Annotated[str, typer.Option(help="Address to serve on, HOST:PORT.")] = "127.0.0.1:8900",
    replay: Annotated[
        Path | None, typer.Option(help="Answer with this HAR file's recorded responses.", dir_okay=False)
    ] = None,
    latency: Annotated[
        int, typer.Option(help="Milliseconds before the first byte of every answer.", min=0)
    ] = 0,
    chunk_delay: Annotated[int, typer.Option(help="Milliseconds between two events of a stream.", min=0)] = 0,
    output_tokens: Annotated[
        int, typer.Option(help="Output tokens per answer when the request's max-tokens allows more.", min=0)
    ] = DEFAULT_OUTPUT_TOKENS,
) -> None:
    """Serve simulated LLM provider APIs (Anthropic, OpenAI with its WebSocket APIs, Gemini, Bedrock) for tests and demos."""
    from meter.sim import make_server, serve_sim  # the server's modules load only when it runs
    from meter.sim_replay import ReplayError

    host, port = parse_listen(listen)
    try:  # the replay file is read and the port bound before anything says it is serving
        server = make_server(
            host, port, replay=replay, latency_ms=latency, chunk_delay_ms=chunk_delay,
            output_tokens=output_tokens,
        )  # fmt: skip
    except ReplayError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replay") from None
    except OSError as exc:
        raise CliError(f"cannot listen on {listen}: {exc.strerror}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    typer.echo(
        f"bbnet sim: serving on {host}:{server.server_address[1]}"
        + (f", replaying {replay}" if replay else ""),
        err=True,
    )
    try:
        serve_sim(server)
    except KeyboardInterrupt:
        typer.echo("bbnet sim: stopped", err=True)


def mount(root: typer.Typer) -> None:
    """Add the ``sim`` command to the root ``bbnet`` app."""
    root.command("sim")(sim)
