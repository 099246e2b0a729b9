"""`bbnet demo`: the whole stack on one machine, narrated — two bottles, the meter in front of the
provider simulator, an agent loop with an official SDK in each, one budget running out and the
kernel cutting that bottle off, a restore, and the reports.

Everything lives in a private work directory (ledger, settings, CA, logs) and uses the real
`bbnet` commands a user would type. Whatever happens — success, an error, Ctrl-C, SIGTERM — the
agents, the meter and the simulator are stopped and the bottles, cgroups and nftables table the
demo made are removed (:func:`run_demo`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel

from bbnet.clikit import print_error
from bbnet.ledger import Ledger, LedgerError
from demo import procs, stack, view
from demo.scenario import (
    CALLS_AFTER_RESTORE,
    CLAUDE,
    DEMO_POOL,
    GPT,
    PLANS,
    RAISED_BUDGET,
    AgentPlan,
    agent_args,
    ledger_totals,
    parse_agent_line,
    problems,
    proxy_endpoint,
    report_totals,
    tally,
)
from enforcer.errors import EnforcerError

AGENTS_DEADLINE_S = 90.0
SERVICE_START_S = 30.0
PROBE_TIMEOUT_S = 0.5  # the host answers at once: a connection still pending after this was dropped
INTRO = (
    "bbnet meters every LLM call a bottle makes and cuts the bottle off in the kernel when its "
    "budget runs out.\nThis demo makes two bottles (network namespaces), runs an agent loop with the "
    "official [bold]anthropic[/] SDK in one and [bold]openai[/] in the other, through `bbnet serve` in "
    "front of a local provider simulator — no internet, no API keys — lets demo-claude run out, and "
    "proves the cutoff from inside it."
)


@dataclass(frozen=True)
class Options:
    keep: bool = False  # leave it running until Ctrl-C
    pause: bool = True  # wait for Enter between acts
    json_out: bool = False  # summary as JSON on stdout; narration on stderr
    workdir: Path | None = None  # kept afterwards; default: a temporary directory, removed


class Demo:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.out = sys.stderr if options.json_out else sys.stdout
        # Not a terminal (CI, a log): wide enough for the tables instead of rich's default 80 columns.
        self.console = Console(file=self.out, width=None if self.out.isatty() else 120)
        self.bbnet = str(Path(sys.executable).parent / "bbnet")
        self.work = options.workdir or Path(tempfile.mkdtemp(prefix="bbnet-demo-"))
        self.db = self.work / "ledger.db"
        self.services: list[procs.Service] = []
        self.agents: list[procs.AgentRun] = []
        self.host_touched = False  # preflight passed: the table and bottles from now on are ours
        self.cgroup_parent_existed = True
        self.summary: dict[str, Any] = {"workdir": str(self.work), "bottles": {}, "probes": {}, "states": {}}
        self.proxy: dict[str, tuple[str, int]] = {}  # bottle → the meter's address and port, as it sees it
        self.sim: tuple[str, int] = ("", 0)
        self.ca = str(self.work / "confdir" / "mitmproxy-ca-cert.pem")

    # -- narration ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.console.print(text)

    def act(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")

    def pause(self) -> None:
        if self.options.pause:
            self.console.input("[dim]press Enter to go on…[/]")

    def command(self, *args: str) -> list[str]:
        """A `bbnet` command line, shown as the user would type it."""
        self.console.print(f"[dim]$[/] [cyan]{shlex.join(['bbnet', *args])}[/]")
        return [self.bbnet, *args]

    # -- the acts ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.console.print(Panel(INTRO, title="bbnet demo", border_style="blue"))
        stack.preflight([p.bottle for p in PLANS], DEMO_POOL)
        self.cgroup_parent_existed = stack.cgroup_parent_exists()
        self.host_touched = True
        self.work.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.db.exists():
            raise procs.DemoError(f"{self.db} already exists: give --workdir an empty directory")
        self.start()
        self.pause()
        self.spend()
        self.prove_cutoff()
        self.pause()
        self.restore()
        self.reports()
        self.summary["problems"] = problems(self.summary)
        self.summary["ok"] = not self.summary["problems"]
        return self.summary

    def start(self) -> None:
        self.act("1. two bottles, the meter, the simulator")
        port, sim_port = procs.free_port(), procs.free_port()
        settings = self.work / "settings.yml"
        settings.write_text(
            f"fail_open: false\nlease_seconds: 30\naddress_pool: {DEMO_POOL}\nproxy_port: {port}\n"
        )
        db = str(self.db)
        for plan in PLANS:
            made = json.loads(procs.run_captured(self.command(
                "bottle", "create", plan.bottle, "--budget", plan.budget_flag, "--proxy-port", str(port),
                "--pool", DEMO_POOL, "--db", db, "--json")))  # fmt: skip
            address, proxy_port = self.proxy[plan.bottle] = proxy_endpoint(made["labels"]["proxy"])
            self.summary["bottles"][plan.bottle] = {"veth": made["veth"], "addresses": made["addresses"],
                                                   "proxy": f"{address}:{proxy_port}"}  # fmt: skip
            self.say(f"  {plan.bottle}: netns {made['netns']}, veth {made['veth']}, address "
                     f"{made['addresses'][0]}, may reach only {address}:{proxy_port}, "
                     f"budget {plan.budget:,} {plan.provider} tokens")  # fmt: skip
        # The simulator listens on a host address the bottles route to, so a bottle trying to go
        # around the meter has a real server to aim at: only the rules stand in the way.
        self.sim = (self.proxy[CLAUDE.bottle][0], sim_port)
        sim_argv = self.command("sim", "--listen", f"{self.sim[0]}:{sim_port}")
        sim = procs.start_service("bbnet sim", sim_argv, self.work / "sim.log")
        self.services.append(sim)
        sim.wait_until(lambda: procs.listening(*self.sim), SERVICE_START_S)
        serve_argv = self.command(
            "serve", "--listen", f"0.0.0.0:{port}", "--upstream-map", f"*=http://{self.sim[0]}:{sim_port}",
            "--db", db, "--settings", str(settings), "--confdir", str(self.work / "confdir"),
            "--lock", str(self.work / "serve.lock"),
        )  # fmt: skip
        serve = procs.start_service("bbnet serve", serve_argv, self.work / "serve.log")
        self.services.append(serve)
        serve.wait_until(
            lambda: Path(self.ca).exists() and procs.listening("127.0.0.1", port), SERVICE_START_S
        )
        self.say(f"  meter listening on :{port} (upstream: the simulator on {self.sim[0]}:{sim_port}); "
                 f"bottles trust its CA {self.ca}")  # fmt: skip
        self.say("\nFrom inside each bottle: the meter is reachable, the simulator itself is not.")
        rows = []
        for plan in PLANS:
            result = self.probe(plan.bottle)
            self.summary["probes"].setdefault("before", {})[plan.bottle] = {
                k: v["connected"] for k, v in result.items()
            }
            rows += [(plan.bottle, "the meter (proxy)", result["proxy"]),
                     (plan.bottle, "the simulator, directly", result["bypass"])]  # fmt: skip
        self.console.print(view.probe_table("before any cutoff", rows))

    def probe(self, bottle: str) -> dict[str, Any]:
        """TCP connection attempts from inside ``bottle``: its meter, and the simulator directly."""
        (address, port), (sim_address, sim_port) = self.proxy[bottle], self.sim
        argv = self.in_bottle(
            bottle,
            "-m",
            "demo.probe",
            f"proxy={address}:{port}",
            f"bypass={sim_address}:{sim_port}",
            "--timeout",
            str(PROBE_TIMEOUT_S),
        )
        result: dict[str, Any] = json.loads(procs.run_captured(argv))
        return result

    def in_bottle(self, bottle: str, *python_args: str) -> list[str]:
        """``bbnet bottle exec`` of this Python with ``python_args`` in ``bottle``."""
        return [
            self.bbnet,
            "bottle",
            "exec",
            "--db",
            str(self.db),
            bottle,
            "--",
            sys.executable,
            *python_args,
        ]

    def agent_in_bottle(self, plan: AgentPlan, calls: int | None = None) -> list[str]:
        address, port = self.proxy[plan.bottle]
        return self.in_bottle(plan.bottle, *agent_args(plan, f"http://{address}:{port}", self.ca, calls))

    def agent(self, plan: AgentPlan, calls: int | None = None) -> procs.AgentRun:
        argv = self.agent_in_bottle(plan, calls)
        run = procs.start_agent(plan.bottle, argv, self.work / f"agent-{plan.bottle}.log")
        self.agents.append(run)
        return run

    def spend(self) -> None:
        self.act("2. agents at work: live spend")
        for plan in PLANS:
            address, port = self.proxy[plan.bottle]
            self.say(f"[dim]$[/] [cyan]bbnet bottle exec {plan.bottle} -- python -m demo.agent --sdk {plan.sdk} "
                     f"--proxy http://{address}:{port} --ca … --stream-every {plan.stream_every}[/]")  # fmt: skip
        runs = {plan.bottle: self.agent(plan) for plan in PLANS}
        costs: dict[str, float] = {}
        last_usage = 0
        deadline = time.monotonic() + AGENTS_DEADLINE_S
        with (
            Ledger.open(self.db, create=False) as ledger,
            Live(console=self.console, refresh_per_second=8) as live,
        ):
            while True:
                for row in ledger.usage(since_id=last_usage):
                    last_usage = row["id"]
                    costs[row["bottle"]] = costs.get(row["bottle"], 0.0) + float(row["cost_usd"] or 0)
                states = {s.bottle: s.state for s in ledger.desired_states()}
                live.update(view.live_frame(PLANS, ledger.pools(), {b: r.snapshot() for b, r in runs.items()},
                                            states, costs))  # fmt: skip
                if not any(r.running() for r in runs.values()):
                    break
                if time.monotonic() > deadline:
                    raise procs.DemoError(f"the agents did not finish within {AGENTS_DEADLINE_S:.0f} s")
                time.sleep(0.25)
        self.console.print()
        self.summary["agents"] = {b: tally(r.finish(timeout=10)).as_json() for b, r in runs.items()}

    def prove_cutoff(self) -> None:
        from enforcer.nft import Nft

        self.act(f"3. {CLAUDE.bottle} ran out: cut off in the kernel")
        with Ledger.open(self.db, create=False) as ledger:
            cut = [a for a in ledger.actions(bottle=CLAUDE.bottle) if a.action == "cutoff"]
            states = {p.bottle: ledger.desired_state(p.bottle).state for p in PLANS}
        self.summary["states"]["during_cutoff"] = states
        record: dict[str, Any] = {}
        if cut:
            detail = json.loads(cut[0].detail or "{}")
            record = {"actor": cut[0].actor, "reason": cut[0].reason,
                      "noticed_to_applied_ms": detail.get("noticed_to_applied_ms")}  # fmt: skip
            self.say(f"  the {cut[0].actor} cut {CLAUDE.bottle} off: {cut[0].reason}\n"
                     f"  {detail.get('noticed_to_applied_ms')} ms after the meter saw the pool run dry; since "
                     f"then the agent's calls fail: {self.summary['agents'][CLAUDE.bottle]['last_error'][:60]}")  # fmt: skip
        self.say(f"\nProof from inside {CLAUDE.bottle}: a direct connection and an API call both fail.")
        result = self.probe(CLAUDE.bottle)
        neighbour = self.probe(GPT.bottle)
        output = procs.run_captured(self.agent_in_bottle(CLAUDE, calls=1))
        call = [e for line in output.splitlines() if (e := parse_agent_line(line)) is not None]
        api = call[0] if call else {"outcome": "error", "error": "no output"}
        self.console.print(view.probe_table("during the cutoff", [
            (CLAUDE.bottle, "the meter (proxy)", result["proxy"]),
            (CLAUDE.bottle, "the simulator, directly", result["bypass"]),
            (GPT.bottle, "the meter (proxy)", neighbour["proxy"])]))  # fmt: skip
        self.say(f"  an API call with the anthropic SDK from {CLAUDE.bottle}: [red]{api['outcome']}[/] "
                 f"({str(api.get('error', ''))[:80]})")  # fmt: skip
        veth = self.summary["bottles"][CLAUDE.bottle]["veth"]
        counters = Nft().cutoff_counters()
        record |= {"in_kernel": veth in counters, "dropped_packets": counters.get(veth, (0, 0))[0]}
        self.summary["cutoff"] = record
        self.summary["probes"]["after_cutoff"] = {"proxy": result["proxy"]["connected"],
                                                  "bypass": result["bypass"]["connected"],
                                                  "api_call": api["outcome"],
                                                  "neighbour_proxy": neighbour["proxy"]["connected"]}  # fmt: skip
        self.say(
            f"  nftables: {veth} is in the cutoff set of table netdev bbnet, which has dropped "
            f"{record['dropped_packets']} packets from it (`nft list set netdev bbnet cutoff`)"
        )

    def restore(self) -> None:
        self.act(f"4. the operator raises {CLAUDE.bottle}'s budget and restores it")
        db, settings = str(self.db), str(self.work / "settings.yml")
        procs.run_shown(self.command("budget", "set", f"bottle:{CLAUDE.bottle}", CLAUDE.provider,
                                     str(RAISED_BUDGET), "--db", db, "--settings", settings), self.out)  # fmt: skip
        procs.run_shown(
            self.command("restore", CLAUDE.bottle, "--reason", "budget raised", "--db", db), self.out
        )
        events = self.agent(CLAUDE, CALLS_AFTER_RESTORE).finish(timeout=60)
        for line in view.agent_lines(events, last=CALLS_AFTER_RESTORE):
            self.console.print(line)
        with Ledger.open(self.db, create=False) as ledger:
            state = ledger.desired_state(CLAUDE.bottle).state
        t = tally(events)
        self.summary["restored"] = {"state": state, "calls": t.calls, "ok": t.ok}

    def reports(self) -> None:
        self.act("5. what it cost, and what bbnet did")
        db = str(self.db)
        procs.run_shown(self.command("report", "cost", "--db", db), self.out)
        procs.run_shown(self.command("report", "actions", "--db", db), self.out)
        report, rows = self.settled_report(db)
        with Ledger.open(self.db, create=False) as ledger:
            self.summary["actions"] = [
                {"id": a.id, "bottle": a.bottle, "action": a.action, "actor": a.actor, "reason": a.reason,
                 "result": a.result} for a in ledger.actions()
            ]  # fmt: skip
        self.summary["report_totals"] = report_totals(report)
        self.summary["ledger_totals"] = ledger_totals(rows)
        self.summary["ledger_last_id"] = rows[-1]["id"] if rows else 0

    def settled_report(self, db: str, attempts: int = 5) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``report cost --format json`` and the ledger's usage rows, read around the same moment.

        The meter is still serving, so a call can land while the report runs (on a kernel that
        cannot end a cut-off bottle's connections, a request its agent sent just before the cut is
        retransmitted and metered after the restore). So the ledger is read before and after the
        report, and the pair is kept only when no usage row landed in between.
        """
        for _ in range(attempts):
            before = self.usage_rows()
            report = json.loads(
                procs.run_captured([self.bbnet, "report", "cost", "--format", "json", "--db", db])
            )
            if self.usage_rows() == before:
                return report, before
            self.say("  [dim](a late call was metered while the report ran: reading again)[/]")
        raise procs.DemoError(f"the ledger kept changing under {attempts} reports in a row")

    def usage_rows(self) -> list[dict[str, Any]]:
        with Ledger.open(self.db, create=False) as ledger:
            rows, page = [], ledger.usage(limit=1000)
            while page:
                rows += page
                page = ledger.usage(since_id=page[-1]["id"], limit=1000)
        return rows

    # -- the end -----------------------------------------------------------------------------------

    def explore(self) -> None:
        """--keep: say how to look around, then wait for Ctrl-C or SIGTERM."""
        address, port = self.proxy[GPT.bottle]
        agent = (
            f"{sys.executable} -m demo.agent --sdk {GPT.sdk} --proxy http://{address}:{port} --ca {self.ca}"
        )
        bbnet = "bbnet" if shutil.which("bbnet") == self.bbnet else self.bbnet
        self.console.print(view.explore_panel(bbnet, str(self.db), GPT.bottle, agent, os.getpid()))
        try:
            while all(s.process.poll() is None for s in self.services):
                time.sleep(0.5)
            self.say("[red]a service stopped on its own; cleaning up[/]")
        except KeyboardInterrupt:  # the way --keep is meant to end
            self.say("\nstopping")

    def cleanup(self, keep_workdir: bool) -> list[str]:
        """Stop every child, then remove what the demo made on the host. Returns what failed."""
        for run in self.agents:
            procs.stop(run.process)
        for service in reversed(self.services):
            procs.stop(service.process)
        failed: list[str] = []
        if self.host_touched:
            failed = stack.teardown(self.db, [p.bottle for p in PLANS],
                                    remove_cgroup_parent=not self.cgroup_parent_existed)  # fmt: skip
        if self.options.workdir is None and not keep_workdir:
            shutil.rmtree(self.work, ignore_errors=True)
        return failed


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(options: Options) -> int:
    """Run the demo; clean up whatever happens. Exit status: 0 shown, 1 something was not shown,
    2 could not run, 130 interrupted."""
    demo = Demo(options)
    handlers = {s: signal.signal(s, _interrupted) for s in (signal.SIGTERM, signal.SIGHUP)}
    summary: dict[str, Any] | None = None
    code = 2
    try:
        summary = demo.run()
        code = 0 if summary["ok"] else 1
        for problem in summary["problems"]:
            demo.say(f"[bold red]not shown:[/] {problem}")
        if summary["ok"]:
            demo.say(
                "[bold green]shown: metering, a budget cutoff in the kernel, a restore, reports that add up.[/]"
            )
        if options.keep:
            demo.explore()
    except (procs.DemoError, EnforcerError, LedgerError) as e:
        print_error(e, command="bbnet demo")
    except KeyboardInterrupt:
        demo.say("\n[yellow]interrupted: cleaning up[/]")
        code = 130
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        # after a failure the logs tell what went wrong: keep them
        failed = demo.cleanup(keep_workdir=demo.host_touched and code not in (0, 130))
        for s, handler in {signal.SIGINT: signal.default_int_handler, **handlers}.items():
            signal.signal(s, handler)
    if failed:
        demo.say("[bold red]could not remove:[/] " + "; ".join(failed))
        code = code or 1
    elif demo.host_touched:
        demo.say("[dim]cleaned up: agents, meter and simulator stopped; bottles, cgroups and the nftables "
                 "table removed[/]")  # fmt: skip
    if code not in (0, 130) and demo.host_touched:
        demo.say(f"the demo's ledger and logs are in {demo.work}")
    if options.json_out and summary is not None:
        sys.stdout.write(json.dumps({**summary, "cleanup_failed": failed}, indent=2, default=str) + "\n")
    return code
