"""A real OpenSSH server on 127.0.0.1 for tests: Debian's ``sshd``, key authentication only.

Everything it uses is throwaway and lives in one temporary directory: the host
key, the client key, ``authorized_keys``, the config, the pid file and the log.
It serves the current user (root in CI) on an unprivileged port, and tests use
a temporary directory as the remote's store.

Usage (a pytest fixture; skipped, with the reason, where ``sshd`` cannot start)::

    def test_something(sshd):
        url = sshd.url(store_dir)                   # ssh://user@127.0.0.1:port/store_dir
        sshd.client_key                             # the private key to log in with
        sshd.known_hosts_line                       # "[127.0.0.1]:port ssh-ed25519 AAAA..."
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"


@dataclass
class SSHServer:
    port: int
    user: str
    client_key: Path  # private key; its public half is in authorized_keys
    host_public_key: str  # "ssh-ed25519 AAAA..." (no comment)
    process: subprocess.Popen
    log: Path

    def url(self, path: Path | str) -> str:
        return f"ssh://{self.user}@{HOST}:{self.port}{Path(path).as_posix()}"

    @property
    def known_hosts_line(self) -> str:
        """The server's entry for an OpenSSH ``known_hosts`` file (non-default port: ``[host]:port``)."""
        return f"[{HOST}]:{self.port} {self.host_public_key}\n"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class SSHDUnavailable(RuntimeError):
    """sshd is not installed or did not start; the message says why."""


def keygen(path: Path) -> None:
    """A throwaway ed25519 key pair without passphrase: ``path`` and ``path.pub``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "throwaway-test-key", "-f", str(path)],
                   check=True, capture_output=True, text=True)


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when the test process dies (pytest killed, ^C)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _banner(port: int) -> bytes:
    with socket.create_connection((HOST, port), timeout=2) as conn:
        return conn.recv(64)


def start_sshd(workdir: Path, attempts: int = 3, timeout: float = 15.0) -> SSHServer:
    """Start sshd in ``workdir``; raise :class:`SSHDUnavailable` with the reason if it cannot run."""
    if not SSHD.exists():
        raise SSHDUnavailable(f"{SSHD} is not installed (Debian: apt-get install openssh-server)")
    if shutil.which("ssh-keygen") is None:
        raise SSHDUnavailable("ssh-keygen is not installed (Debian: apt-get install openssh-client)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "ssh_host_ed25519_key", workdir / "client_ed25519_key"
    keygen(host_key)
    keygen(client_key)
    authorized_keys = workdir / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized_keys)
    for path in (host_key, client_key, authorized_keys):
        path.chmod(0o600)
    # sshd checks that its privilege-separation directory exists, even with a private config.
    try:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError:
        pass  # not root: sshd then runs without privilege separation for our own user

    failures = []
    for _ in range(attempts):  # the free port can be taken between choosing and binding: retry
        port = _free_port()
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            f"ListenAddress {HOST}\n"
            f"HostKey {host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized_keys}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n"
        )
        log = workdir / f"sshd-{port}.log"
        check = subprocess.run([str(SSHD), "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise SSHDUnavailable(f"sshd rejects its config: {check.stderr.strip() or check.stdout.strip()}")
        with open(log, "wb") as log_handle:
            process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_handle,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if _banner(port).startswith(b"SSH-2.0-"):
                    return SSHServer(port=port, user=getpass.getuser(), client_key=client_key,
                                     host_public_key=" ".join(host_key.with_suffix(".pub").read_text().split()[:2]),
                                     process=process, log=log)
            except OSError:
                time.sleep(0.1)
        if process.poll() is None:
            process.kill()
        process.wait()
        failures.append(f"port {port}: exit {process.returncode}: {log.read_text(errors='replace').strip()[-800:]}")
    raise SSHDUnavailable("sshd did not start: " + " | ".join(failures))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A running sshd for the module's tests; skips them (reason in the summary) if it cannot start."""
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SSHDUnavailable as exc:
        reason = f"SSH remote tests need a local sshd: {exc}"
        print(reason)
        pytest.skip(reason)
    yield server
    server.stop()
