"""Connection handling: default socket, ASFLOW_SERVER, tokens, TLS,
auto-start, and what an unreachable daemon's error says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from asflow.client import AsflowError, Client
from asflow.connection import ConnectOptions, default_log_path, default_socket_path, find_daemon_binary

from conftest import ASFLOWD, wait_for


def tcp_port(daemon) -> int:
    def port():
        m = re.search(r"listening on tcp [0-9.]+:([0-9]+)", daemon.log.read_text())
        return int(m.group(1)) if m else 0
    assert wait_for(lambda: port() > 0), daemon.log.read_text()
    return port()


def test_default_socket_follows_xdg_runtime_dir_then_home(env, monkeypatch):
    assert default_socket_path() == f"{env['XDG_RUNTIME_DIR']}/asflow/asflowd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == f"{env['HOME']}/.asflow/asflowd.sock"
    assert default_log_path() == f"{env['XDG_STATE_HOME']}/asflow/asflowd.log"


def test_asflow_server_names_a_unix_socket_and_never_autostarts(daemon, monkeypatch):
    monkeypatch.setenv("ASFLOW_SERVER", daemon.server)
    options = ConnectOptions.resolve()
    assert (options.server, options.socket, options.autostart) == ("", str(daemon.socket), False)
    assert Client().runs() == []


def test_unreachable_socket_says_where_it_looked(env, tmp_path):
    missing = tmp_path / "nothing.sock"
    with pytest.raises(AsflowError) as e:
        Client(socket=str(missing), autostart=False).runs()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.message == f"no asflowd is listening on {missing}"


def test_no_daemon_binary_lists_every_place_looked_at(env, tmp_path, monkeypatch):
    # Nothing on PATH, and a package copy outside any build tree.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("asflow.connection.__file__", str(tmp_path / "pkg" / "asflow" / "connection.py"))
    monkeypatch.setitem(__import__("sys").modules, "asflow.v1", None)
    binary, looked = find_daemon_binary()
    assert binary is None
    assert looked == [str(tmp_path / "build" / "server" / "asflowd"), "asflowd on PATH"]
    with pytest.raises(AsflowError) as e:
        Client().runs()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.message == (
        f"no asflowd is listening on {default_socket_path()} and none could be started: no asflowd binary "
        f"found (looked at: {tmp_path}/build/server/asflowd, asflowd on PATH); set ASFLOW_DAEMON or put "
        "asflowd on PATH")


def test_autostarts_the_build_trees_daemon_on_the_default_socket(env):
    binary, looked = find_daemon_binary()
    assert binary == str(ASFLOWD)
    assert Client().runs() == []
    socket = Path(default_socket_path())
    assert socket.is_socket()
    lock = Path(env["XDG_STATE_HOME"]) / "asflow" / "state.db.lock"
    pid = int(lock.read_text().strip())
    try:
        assert "asflowd" in Path(f"/proc/{pid}/cmdline").read_text()
        assert Client().runs() == []  # the same daemon answers a second client
    finally:
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or
                        "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])


def test_tcp_needs_the_token(daemon, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    daemon.stop()
    daemon.extra = ["--listen", "127.0.0.1:0", "--token-file", str(token)]
    daemon.start()
    server = f"127.0.0.1:{tcp_port(daemon)}"
    assert Client(server=server, token_file=str(token)).runs() == []
    with pytest.raises(AsflowError) as e:
        Client(server=server).runs()
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    with pytest.raises(AsflowError) as e:
        Client(server=server, token_file=str(wrong)).runs()
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AsflowError) as e:
        Client(server=server, token_file=str(tmp_path / "empty"))
    assert e.value.message == f"token file {tmp_path}/empty: empty"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_tls_with_the_servers_ca_and_a_client_certificate(daemon, tmp_path):
    d = tmp_path
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=asflow-test-ca", cwd=d)
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", "ext", cwd=d)
    daemon.stop()
    daemon.extra = ["--listen", "127.0.0.1:0", "--tls-cert", str(d / "server.pem"), "--tls-key",
                    str(d / "server.key"), "--tls-client-ca", str(d / "ca.pem")]
    daemon.start()
    server = f"localhost:{tcp_port(daemon)}"
    assert Client(server=server, tls_ca=str(d / "ca.pem"), tls_cert=str(d / "client.pem"),
                  tls_key=str(d / "client.key")).runs() == []
    with pytest.raises(AsflowError) as e:  # no client certificate: mutual TLS refuses
        Client(server=server, tls_ca=str(d / "ca.pem")).runs()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.message == f"cannot reach asflowd at {server} (TLS, CA {d / 'ca.pem'})"
