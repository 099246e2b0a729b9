"""`bbnet meter run` and `bbnet meter ca`: the meter as a standalone proxy, and its CA."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Annotated

import typer

from bbnet.clikit import (
    CliError,
    ConfdirOpt,
    DbOpt,
    SettingsOpt,
    UpstreamOpt,
    console,
    err_console,
    parse_listen,
)
from bbnet.defaults import DEFAULT_PROXY_PORT
from bbnet.ledger import Ledger, LedgerError
from bbnet.providers import with_extra

if TYPE_CHECKING:
    from bbnet.egress import Policy
    from bbnet.settings import Settings

ListenOpt = Annotated[str, typer.Option("--listen", help="HOST:PORT the proxy listens on")]


def fail_open_from_env() -> bool:
    return os.environ.get("BBNET_FAIL_OPEN") == "1"


def egress_default(s: Settings, ledger: Ledger | None, actor: str) -> Policy:
    """The host default egress policy from settings; a change since the last start is audited."""
    from bbnet.egress import compile_policy
    from bbnet.egress_ops import policy_json

    if ledger is not None:  # a ledger that fails here fails LLM calls closed; the default still holds
        with contextlib.suppress(LedgerError):
            ledger.note_egress_default(policy_json(s.egress), actor)
    return compile_policy(s.egress)


def run(
    listen: ListenOpt = f"0.0.0.0:{DEFAULT_PROXY_PORT}",
    upstream_map: UpstreamOpt = None,
    db: DbOpt = None,
    settings: SettingsOpt = None,
    confdir: ConfdirOpt = None,
) -> None:
    """Run the meter proxy (mitmproxy + the bbnet addon) in the foreground."""
    from bbnet.settings import load as load_settings
    from meter.addon import Meter, parse_upstream_map
    from meter.proxy import default_confdir, serve_forever, setup_logging

    host, port = parse_listen(listen)
    s = load_settings(settings)
    upstream = parse_upstream_map(upstream_map or [])
    setup_logging()
    ledger: Ledger | None = None
    problem = ""
    try:
        ledger = Ledger.open(s.ledger_target(db), node=s.node or "", lazy=True)
    except LedgerError as e:
        problem = str(e)
    meter = Meter(ledger, ledger_problem=problem, fail_open=s.fail_open or fail_open_from_env(),
                  lease_seconds=s.lease_seconds, upstream=upstream, catalogue=with_extra(s.extra_providers()),
                  egress_default=egress_default(s, ledger, "meter"), stakes=s.stakes)  # fmt: skip
    try:
        serve_forever([meter], host, port, confdir or default_confdir())
    except OSError as e:
        raise CliError(f"cannot listen on {listen}: {e}") from None
    except KeyboardInterrupt:
        err_console.print("meter: stopped")


def ca(
    confdir: ConfdirOpt = None, pem: Annotated[bool, typer.Option("--pem", help="Print the PEM")] = False
) -> None:
    """Print the path of the CA certificate bottles must trust (created if missing)."""
    from meter.proxy import default_confdir, ensure_ca

    path = ensure_ca(confdir or default_confdir())
    if pem:
        console.print(path.read_text(), end="", markup=False, highlight=False)
    else:
        console.print(str(path), markup=False, highlight=False)


def mount(meter_app: typer.Typer) -> None:
    meter_app.command("run")(run)
    meter_app.command("ca")(ca)
