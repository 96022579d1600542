"""Make host loopback ports reachable inside a private network namespace.

Argo CD's application-controller binds its metrics server to 0.0.0.0 with no flag to change it,
so it runs in a network namespace that has only loopback. This relay listens on 127.0.0.1:PORT
*inside* that namespace and forwards each connection to 127.0.0.1:PORT on the host (the API
server, the chart mirror). A socket keeps the namespace it was created in, so one process can
listen there and connect here.

    python -m polyp_dev.cluster.relay --pid PID PORT [PORT ...]     # PID: a process in the namespace
    python -m polyp_dev.cluster.relay --pid PID --bind ADDRESS PORT # listen on ADDRESS:PORT there instead
    python -m polyp_dev.cluster.relay --pid PID --bind ADDRESS --as-port 6443 PORT  # ADDRESS:6443 there -> PORT here
    nsenter --net=/proc/PID/ns/net python -m polyp_dev.cluster.relay --loopback-up
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import functools
import os
import socket
import struct

CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, kind) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path} failed")
    finally:
        os.close(fd)


def _loopback_up() -> None:
    """A new network namespace starts with `lo` down (what `ip link set lo up` does, without iproute2)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def listen_inside(pid: int, ports: list[int], address: str = "127.0.0.1") -> list[socket.socket]:
    """Listening sockets on address:port in the network namespace of process `pid`.

    A forked child enters that namespace (and, for a non-root user, its user namespace, which a
    process cannot leave again), creates the sockets and passes them back over a socket pair.
    """
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if os.geteuid() != 0:
                _setns(f"/proc/{pid}/ns/user", CLONE_NEWUSER)
            _setns(f"/proc/{pid}/ns/net", CLONE_NEWNET)
            servers = []
            for port in ports:
                server = socket.socket()
                server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                server.bind((address, port))
                server.listen(128)
                servers.append(server)
            socket.send_fds(child_end, [b"ok"], [s.fileno() for s in servers])
            code = 0
        finally:
            os._exit(code)
    _, fds, _, _ = socket.recv_fds(parent_end, 16, len(ports))
    os.waitpid(child, 0)
    if len(fds) != len(ports):
        raise OSError(f"could not listen inside the namespace of process {pid}")
    sockets = [socket.socket(fileno=fd) for fd in fds]
    for s in sockets:
        s.setblocking(False)
    return sockets


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)  # in the host namespace
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(sockets: list[socket.socket], host_ports: list[int] | None = None) -> None:
    """Forward each listening socket to the host's port of the same number, or to its host_ports entry."""
    servers = []
    for server_socket, port in zip(sockets, host_ports or [s.getsockname()[1] for s in sockets], strict=True):
        servers.append(await asyncio.start_server(functools.partial(_forward, port), sock=server_socket))
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pid", type=int, help="a process in the namespace")
    parser.add_argument("--bind", default="127.0.0.1", help="the address to listen on inside the namespace")
    parser.add_argument("--as-port", type=int, help="listen on this port inside instead (one PORT only)")
    parser.add_argument("--loopback-up", action="store_true", help="bring up `lo` in this process's namespace")
    parser.add_argument("ports", type=int, nargs="*")
    args = parser.parse_args()
    if args.loopback_up:
        _loopback_up()
    elif args.as_port:
        if len(args.ports) != 1:
            parser.error("--as-port takes exactly one PORT")
        asyncio.run(serve(listen_inside(args.pid, [args.as_port], args.bind), args.ports))
    else:
        asyncio.run(serve(listen_inside(args.pid, args.ports, args.bind)))


if __name__ == "__main__":
    main()
