"""`tether discover`: find devices on the local network by mDNS/zeroconf and SSDP."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tether._discover import SSDP_ADDRESS, Device
from tether._discover import discover as find
from tether.cli._support import UsageProblem, guarded, run_async, stderr, stdout

__all__ = ["discover"]


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise UsageProblem(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _where(device: Device) -> str:
    if device.location:
        return device.location
    host = ", ".join(device.addresses)
    return f"{host}:{device.port}" if device.port is not None else host


def discover(
    ctx: typer.Context,
    *,
    service_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type", "-t", help="DNS-SD service type to browse. Repeatable.", show_default=False
        ),
    ] = None,
    mdns: Annotated[bool, typer.Option("--mdns/--no-mdns", help="Browse mDNS.")] = True,
    ssdp: Annotated[bool, typer.Option("--ssdp", help="Also search by SSDP (UPnP).")] = False,
    search_target: Annotated[
        str, typer.Option("--st", help="The SSDP search target.")
    ] = "ssdp:all",
    timeout: Annotated[
        float, typer.Option(min=0.1, max=60, help="Seconds to listen; the command ends then.")
    ] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface", help="Only this interface address (mDNS). Repeatable.", hidden=True
        ),
    ] = None,
    ssdp_target: Annotated[
        str | None,
        typer.Option("--ssdp-target", help="Send the M-SEARCH to HOST:PORT.", hidden=True),
    ] = None,
) -> None:
    """Find devices and services on the local network, for at most --timeout seconds.

    mDNS browses `_http._tcp.local.` unless --type names others; --ssdp adds an SSDP search.
    """
    with guarded(ctx):
        if not mdns and not ssdp:
            raise UsageProblem("nothing to do", "leave out --no-mdns, or add --ssdp")
        types = service_type or ["_http._tcp.local."]
        devices = run_async(
            find(
                mdns=mdns,
                ssdp=ssdp,
                service_types=types,
                timeout=timeout,
                interfaces=interface,
                ssdp_target=_address(ssdp_target) if ssdp_target else SSDP_ADDRESS,
                search_target=search_target,
            )
        )
    if as_json:
        for device in devices:
            typer.echo(json.dumps(device.as_dict(), ensure_ascii=False))
        return
    if not devices:
        stderr().print(Text(f"nothing answered within {timeout:g} s"))
        return
    table = Table("via", "name", "type", "where", "server")
    for device in sorted(devices, key=lambda d: (d.source, d.type, d.name)):
        table.add_row(device.source, device.name, device.type, _where(device), device.server or "")
    stdout().print(table)
