"""Enforcer figures with 10, 100 and 1,000 real bottles (netns + veth each); prints JSON.

Per size: time to make the bottles, full table apply (and read-back verification), one cutoff
(one set element, in-process), command-to-drop latency of a probe flow (UDP packets every 0.1 ms
from a bottle; the last packet that arrives after the cutoff is issued), and the wall time of the
``bbnet cutoff`` CLI. Run as root; everything made is removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path

from bbnet.ledger import Ledger
from bbnet.model import Bottle
from enforcer import links
from enforcer.nft import Nft
from netrules import render
from netrules.addressing import lease_in
from netrules.types import BottleNet, Endpoint

SIZES = (10, 100, 1000)
POOL = IPv4Network("10.250.0.0/16")
PROBE_PORT = 9999
CUT_SAMPLES = 20
SO_TIMESTAMPNS = 35  # Linux; not exported by the socket module


def _make(count: int) -> list[tuple[str, str, BottleNet]]:
    made = []
    for i, subnet in zip(range(count), POOL.subnets(new_prefix=30), strict=False):
        lease = lease_in(subnet)
        name, veth = f"bench{i}", f"bbbench{i}"
        links.create_netns(f"bbnet-{name}")
        made.append((name, f"bbnet-{name}", BottleNet(veth, (lease.bottle.ip,), Endpoint(lease.host.ip, "tcp", 8080),
                                                     (Endpoint(lease.host.ip, "udp", PROBE_PORT),))))  # fmt: skip
        links.create_veth(veth, f"bbnet-{name}", lease)
    return made


def _remove(made: list[tuple[str, str, BottleNet]]) -> None:
    for _name, netns, net in made:
        links.delete_link(net.veth)
        links.delete_netns(netns)


def _probe_latency(nft: Nft, netns: str, net: BottleNet) -> dict[str, float | int]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((str(net.proxy.address), PROBE_PORT))
    receiver.settimeout(0.5)
    receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # kernel receive time, not Python's
    arrivals: list[float] = []
    stop = threading.Event()

    def send() -> None:
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        os.setns(fd, os.CLONE_NEWNET)
        os.close(fd)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.is_set():
                s.sendto(b"probe", (str(net.proxy.address), PROBE_PORT))
                time.sleep(0.0001)

    def receive() -> None:
        while True:
            try:
                _data, ancillary, _flags, _addr = receiver.recvmsg(16, 64)
            except TimeoutError:
                return
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    arrivals.append(seconds + nanos / 1e9)

    sender, listener = threading.Thread(target=send), threading.Thread(target=receive)
    sender.start()
    listener.start()
    time.sleep(0.3)
    issued = time.time()
    nft.run(render.cut(net.veth))
    returned = time.time()
    time.sleep(0.2)
    stop.set()
    sender.join()
    listener.join()
    receiver.close()
    nft.run(render.restore(net.veth))
    before = [t for t in arrivals if t <= returned]
    return {
        "command_ms": (returned - issued) * 1000,
        "last_packet_after_issue_ms": (max(before) - issued) * 1000 if before else 0.0,
        "packets_after_command_returned": len([t for t in arrivals if t > returned]),
        "packets_before_cutoff": len(before),
    }


def _cli_wall(made: list[tuple[str, str, BottleNet]], workdir: Path) -> float | None:
    """Wall time of ``bbnet cutoff`` (median of 3), or None if the CLI does not have it yet."""
    bbnet = shutil.which("bbnet") or str(Path(sys.executable).parent / "bbnet")
    probe = subprocess.run([bbnet, "cutoff", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    db = workdir / "ledger.db"
    with Ledger.open(db) as ledger:
        for name, netns, net in made:
            ledger.add_bottle(Bottle(name=name, netns=netns, veth=net.veth, addresses=(f"{net.addresses[0]}/30",),
                                     labels={"proxy": str(net.proxy)}))  # fmt: skip
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([bbnet, "cutoff", made[0][0], "--db", str(db)], check=True, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
        subprocess.run([bbnet, "restore", made[0][0], "--db", str(db)], check=True, capture_output=True)
    return statistics.median(times)


def measure(count: int, nft: Nft) -> dict[str, object]:
    started = time.perf_counter()
    made = _make(count)
    setup_s = time.perf_counter() - started
    try:
        nets = [net for _, _, net in made]
        applies, verifies = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            nft.run(render.full_table(nets, []))
            t1 = time.perf_counter()
            nft.verify(nets, [])
            applies.append((t1 - t0) * 1000)
            verifies.append((time.perf_counter() - t1) * 1000)
        cuts = []
        for i in range(CUT_SAMPLES):
            veth = nets[i % len(nets)].veth
            t0 = time.perf_counter()
            nft.run(render.cut(veth))
            cuts.append((time.perf_counter() - t0) * 1000)
            nft.run(render.restore(veth))
        probe = _probe_latency(nft, made[0][1], nets[0])
        with tempfile.TemporaryDirectory() as workdir:
            cli_ms = _cli_wall(made, Path(workdir))
        return {
            "bottles": count,
            "setup_netns_veth_s": round(setup_s, 2),
            "full_apply_ms": round(statistics.median(applies), 1),
            "verify_readback_ms": round(statistics.median(verifies), 1),
            "cutoff_one_ms_median": round(statistics.median(cuts), 2),
            "cutoff_one_ms_max": round(max(cuts), 2),
            "probe": {k: round(v, 2) if isinstance(v, float) else v for k, v in probe.items()},
            "cli_cutoff_wall_ms": round(cli_ms, 1) if cli_ms is not None else None,
        }
    finally:
        with contextlib.suppress(Exception):
            nft.run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])
        _remove(made)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("enforcer_bench: needs root")
    subprocess.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0"], check=True)
    nft = Nft()
    sizes = [int(a) for a in sys.argv[1:]] or list(SIZES)
    print(json.dumps({"enforcer": [measure(n, nft) for n in sizes]}, indent=2))


if __name__ == "__main__":
    main()
