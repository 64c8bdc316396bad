"""Hosts made of Linux network namespaces, for tests of the engine across machines.

``Lab`` makes a bridge in this (the test's) namespace at 198.19.N.1/24 (198.18.0.0/15 is the
benchmarking range: neither loopback nor private, so the engine's URL policy allows it with
its defaults) and, per ``add_host``, a namespace joined to the bridge by a veth pair at
198.19.N.k. A process runs "on" a host with ``ip netns exec``; ``cut``/``mend`` set the
host's end of its link down and up, which is what a pulled cable or a lost node looks like
to the others. Everything is removed in ``close`` (namespaces, links, the bridge), which
the fixtures call in their finalizers. Needs root (CI and the development machine run as root).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Host:
    name: str  # the namespace
    address: str  # its address on the lab's bridge
    link: str  # its veth end on the bridge side (in the test's namespace)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        """Every process running in this namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=30)
        return [int(p) for p in out.stdout.split()]


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: str(os.getpid() % 10000))
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.subnet = f"198.19.{os.getpid() % 250}"
        self.bridge = f"blbr{self.tag}"
        self.gateway = f"{self.subnet}.1"  # this namespace's address on the bridge (servers for every host)
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, label: str) -> Host:
        k = len(self.hosts) + 2
        host = Host(f"blast-{label}-{self.tag}", f"{self.subnet}.{k}", f"blh{self.tag}x{k}")
        there = f"bln{self.tag}x{k}"
        ip("netns", "add", host.name)
        self.hosts.append(host)
        ip("link", "add", host.link, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", host.name)
        ip("link", "set", host.link, "master", self.bridge)
        ip("link", "set", host.link, "up")
        ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", there)
        ip("-n", host.name, "link", "set", there, "up")
        ip("-n", host.name, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        ip("link", "set", host.link, "down")

    def mend(self, host: Host) -> None:
        ip("link", "set", host.link, "up")

    def close(self) -> None:
        for h in self.hosts:
            for pid in h.pids():  # nothing may outlive its namespace
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "link", "del", h.link], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", h.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
