"""How the asflow package reaches asflowd: the same daemon asflowctl uses.

`--server`/`ASFLOW_SERVER` (HOST:PORT, or unix:PATH) names a daemon; else
the local unix socket ($XDG_RUNTIME_DIR/asflow/asflowd.sock, or
~/.asflow/asflowd.sock), where an asflowd is started in the background when
nothing listens (as asflowctl does, like Bazel's client starts its server).
A bearer token (token file: first line) goes with every call; a TLS CA (and
optionally a client certificate and key) makes the channel TLS. Everything
in the package (Client, the worker, phase 2's sessions) connects through
`connect()`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from asflow.errors import AsflowError

# As asflowctl (client/connection.cc): a Watch gets a batch about every
# 100 ms; a fixed window that holds many batches needs no BDP pings.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 8 << 20),
)


def home_dir() -> str:
    """$HOME, else the password database entry of the current user."""
    home = os.environ.get("HOME")
    if home:
        return home
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def default_socket_path() -> str:
    """$XDG_RUNTIME_DIR/asflow/asflowd.sock, else ~/.asflow/asflowd.sock."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return f"{xdg}/asflow/asflowd.sock"
    return f"{home_dir()}/.asflow/asflowd.sock"


def default_state_path() -> str:
    """$XDG_STATE_HOME/asflow/state.db, else ~/.local/state/asflow/state.db."""
    base = os.environ.get("XDG_STATE_HOME") or f"{home_dir()}/.local/state"
    return f"{base}/asflow/state.db"


def default_log_path() -> str:
    """asflowd.log next to the default state file (an auto-started daemon's log)."""
    return str(Path(default_state_path()).parent / "asflowd.log")


def read_token_file(path: str) -> str:
    """The first line of `path`, stripped, as asflowctl reads --token-file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise AsflowError(grpc.StatusCode.INVALID_ARGUMENT, f"token file {path}: cannot be read ({e.strerror})")
    token = text.split("\n", 1)[0].strip()
    if not token:
        raise AsflowError(grpc.StatusCode.INVALID_ARGUMENT, f"token file {path}: empty")
    return token


def _read_pem(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise AsflowError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} {path}: cannot be read ({e.strerror})")


@dataclass
class ConnectOptions:
    """Where the daemon is and how to talk to it; `resolve()` fills the
    defaults from the environment as asflowctl does."""

    # HOST:PORT of a remote daemon, or unix:PATH; empty: the local socket.
    server: str = ""
    # Unix socket of the local daemon.
    socket: str = ""
    # File whose first line is the bearer token sent with every call.
    token_file: str = ""
    # PEM CA of the server's certificate: use TLS. Client cert/key: mutual TLS.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # Start a local asflowd when nothing listens on the socket.
    autostart: bool = True
    # The token read from token_file (filled by resolve()).
    token: str = field(default="", repr=False)

    @classmethod
    def resolve(cls, server: str | None = None, token_file: str | None = None, tls_ca: str | None = None,
                tls_cert: str | None = None, tls_key: str | None = None, socket: str | None = None,
                autostart: bool = True) -> "ConnectOptions":
        """Arguments first, then ASFLOW_SERVER, ASFLOW_TOKEN_FILE, ASFLOW_TLS_CA,
        then the default socket."""
        options = cls(
            server=server if server is not None else os.environ.get("ASFLOW_SERVER", ""),
            socket=socket or default_socket_path(),
            token_file=token_file if token_file is not None else os.environ.get("ASFLOW_TOKEN_FILE", ""),
            tls_ca=tls_ca if tls_ca is not None else os.environ.get("ASFLOW_TLS_CA", ""),
            tls_cert=tls_cert or "",
            tls_key=tls_key or "",
            autostart=autostart,
        )
        if options.server.startswith("unix:"):
            # A unix socket named explicitly: that daemon, never auto-started.
            options.socket = options.server[len("unix:"):]
            options.server = ""
            options.autostart = False
        if options.token_file:
            options.token = read_token_file(options.token_file)
        return options

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: the bearer token, if any."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def where(self) -> str:
        return self.server if self.server else f"unix:{self.socket}"


def find_daemon_binary() -> tuple[str | None, list[str]]:
    """asflowd to auto-start, and every place looked at (for messages):
    $ASFLOW_DAEMON; the build tree this package runs from (the stubs'
    build/python, or python/ beside build/); asflowd next to asflowctl on
    PATH (the installed layout); asflowd on PATH."""
    looked: list[str] = []
    env = os.environ.get("ASFLOW_DAEMON")
    if env:
        return env, [f"$ASFLOW_DAEMON={env}"]
    candidates: list[Path] = []
    try:
        import asflow.v1 as stubs  # build/python/asflow/v1 in a build tree
        candidates.append(Path(stubs.__file__).resolve().parents[3] / "server" / "asflowd")
    except ImportError:
        pass
    package = Path(__file__).resolve().parent  # python/asflow in a source tree
    candidates.append(package.parents[1] / "build" / "server" / "asflowd")
    ctl = shutil.which("asflowctl")
    if ctl:
        candidates.append(Path(ctl).resolve().parent / "asflowd")
    for candidate in candidates:
        if str(candidate) in looked:
            continue
        looked.append(str(candidate))
        if os.access(candidate, os.X_OK) and candidate.is_file():
            return str(candidate), looked
    on_path = shutil.which("asflowd")
    looked.append("asflowd on PATH")
    return on_path, looked


def _tail(path: str, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n  {line}" for line in text)


# Auto-started daemons, reaped when they exit (they run in their own
# session and normally outlive this process).
_started: list[subprocess.Popen] = []


def start_daemon(socket_path: str) -> str:
    """Starts `asflowd --socket SOCKET` detached (own session, output
    appended to the log); returns its binary. AsflowError(UNAVAILABLE)
    naming every place looked at when there is none."""
    binary, looked = find_daemon_binary()
    if binary is None:
        raise AsflowError(grpc.StatusCode.UNAVAILABLE,
                          f"no asflowd is listening on {socket_path} and none could be started: "
                          f"no asflowd binary found (looked at: {', '.join(looked)}); "
                          "set ASFLOW_DAEMON or put asflowd on PATH")
    log = default_log_path()
    Path(log).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen([binary, "--socket", socket_path], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True, close_fds=True)
        except OSError as e:
            raise AsflowError(grpc.StatusCode.UNAVAILABLE, f"cannot run {binary}: {e.strerror}")
    _started.append(proc)
    threading.Thread(target=proc.wait, name="asflowd-reaper", daemon=True).start()
    return binary


def _channel_ready(channel: grpc.Channel, timeout: float) -> bool:
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False


def _credentials(options: ConnectOptions) -> grpc.ChannelCredentials | None:
    if not options.tls_ca:
        return None
    ca = _read_pem(options.tls_ca, "TLS CA")
    cert = key = None
    if options.tls_cert:
        cert = _read_pem(options.tls_cert, "TLS certificate")
        key = _read_pem(options.tls_key, "TLS key")
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def connect(options: ConnectOptions, wait: float = 5.0) -> grpc.Channel:
    """A channel to the daemon, connected. For the local socket, starts
    asflowd when nothing listens (options.autostart). AsflowError
    (UNAVAILABLE) says where it looked and, if a started daemon did not
    come up, the tail of its log."""
    if options.server:
        creds = _credentials(options)
        if creds is None:
            channel = grpc.insecure_channel(options.server, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.secure_channel(options.server, creds, options=CHANNEL_OPTIONS)
        if not _channel_ready(channel, wait):
            channel.close()
            raise AsflowError(grpc.StatusCode.UNAVAILABLE, f"cannot reach asflowd at {options.server}"
                              f"{' (TLS, CA ' + options.tls_ca + ')' if options.tls_ca else ''}")
        return channel
    target = f"unix:{options.socket}"
    if _is_socket(options.socket):
        channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        if _channel_ready(channel, 2.0):
            return channel
        channel.close()
    if not options.autostart:
        raise AsflowError(grpc.StatusCode.UNAVAILABLE, f"no asflowd is listening on {options.socket}")
    binary = start_daemon(options.socket)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if _is_socket(options.socket):
            # A fresh channel: an earlier one may be in reconnect backoff.
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            if _channel_ready(channel, 0.5):
                return channel
            channel.close()
        else:
            time.sleep(0.1)
    log = default_log_path()
    raise AsflowError(grpc.StatusCode.UNAVAILABLE,
                      f"started {binary} but it did not come up on {options.socket}; "
                      f"last lines of {log}:{_tail(log, 10)}")
