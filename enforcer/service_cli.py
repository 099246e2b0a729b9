"""`bbnet serve`, `bbnet doctor`, `bbnet install`: the host service and its checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bbnet.clikit import (
    CliError,
    ConfdirOpt,
    DbOpt,
    JsonOpt,
    SettingsOpt,
    UpstreamOpt,
    console,
    parse_listen,
    print_json,
)
from bbnet.defaults import DEFAULT_PROXY_PORT
from bbnet.ledger import default_path as default_db
from enforcer.errors import EnforcerError

ListenOpt = Annotated[
    str | None, typer.Option("--listen", help="HOST:PORT for the meter [default: 0.0.0.0:<proxy_port>]",
                             show_default=False),
]  # fmt: skip
LockOpt = Annotated[
    str | None, typer.Option("--lock", envvar="BBNET_SERVE_LOCK", help="Single-instance lock file",
                             show_default=False),
]  # fmt: skip


def serve(
    listen: ListenOpt = None,
    upstream_map: UpstreamOpt = None,
    db: DbOpt = None,
    settings: SettingsOpt = None,
    confdir: ConfdirOpt = None,
    lock: LockOpt = None,
) -> None:
    """Run the meter and the controller: budgets enforced in the kernel, drift repaired."""
    from bbnet import settings as settings_mod
    from enforcer import serve as service
    from meter.addon import parse_upstream_map
    from meter.proxy import default_confdir, setup_logging
    from meter.run_cli import fail_open_from_env

    path = settings or settings_mod.default_path()
    s = settings_mod.load(path)  # bad input stops here, before anything starts or logs
    host, port = parse_listen(listen or f"0.0.0.0:{s.proxy_port}")
    upstream = parse_upstream_map(upstream_map or [])
    setup_logging()
    if not Path(path).exists():
        import logging

        logging.getLogger("bbnet.serve").warning(
            "no settings file at %s: using the documented defaults", path
        )
    try:
        service.serve(s, db=s.ledger_target(db), host=host, port=port, confdir=confdir or default_confdir(),
                      upstream=upstream, lock=lock or service.default_lock(),
                      fail_open=s.fail_open or fail_open_from_env())  # fmt: skip
    except EnforcerError as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(str(e)) from None


def doctor(
    db: DbOpt = None,
    settings: SettingsOpt = None,
    confdir: ConfdirOpt = None,
    proxy: Annotated[
        str | None,
        typer.Option("--proxy", help="HOST:PORT where the meter should listen", show_default=False),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Check that enforcement is live: kernel features, ledger, settings, proxy, a reserve probe."""
    from bbnet import settings as settings_mod
    from enforcer.doctor import FAIL, run_checks
    from meter.proxy import default_confdir

    path = settings or settings_mod.default_path()
    try:
        loaded = settings_mod.load(path)
        port, db = loaded.proxy_port, loaded.ledger_target(db)
    except settings_mod.SettingsError:
        port = DEFAULT_PROXY_PORT
    host, port = parse_listen(proxy or f"127.0.0.1:{port}")
    checks = run_checks(db=db or default_db(), settings_path=path, proxy_host=host, proxy_port=port,
                        confdir=confdir or default_confdir())  # fmt: skip
    if json_:
        print_json([c.__dict__ for c in checks])
    else:
        table = Table("check", "status", "detail")
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail)
        console.print(table)
    if any(c.status == FAIL for c in checks):
        raise typer.Exit(1)


def install(
    root: Annotated[Path, typer.Option("--root", help="Install under this directory instead of /")] = Path(
        "/"
    ),
    start: Annotated[bool, typer.Option("--start/--no-start", help="Enable and start the unit")] = True,
    json_: JsonOpt = False,
) -> None:
    """Install the systemd unit, /etc/bbnet/settings.yml (kept if present) and /var/lib/bbnet."""
    from enforcer.install import bbnet_command
    from enforcer.install import install as do_install

    try:
        done = do_install(root, bbnet_command(), start=start and root == Path("/"))
    except (OSError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    if json_:
        print_json(done)
    else:
        for line in done:
            console.print(line, markup=False, highlight=False)


def mount(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.command("doctor")(doctor)
    root.command("install")(install)
