"""A real registry for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

Optionally behind htpasswd (basic) auth or token auth; the token issuer here is test code:
it signs RS256 JWTs with a throwaway self-signed certificate the registry trusts.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen
    log: Path
    users: dict[str, str] = field(default_factory=dict)

    def blob_file(self, repo: str, digest: str) -> Path:
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_registry(workdir: Path, auth: str = "none", issuer: "TokenIssuer | None" = None,
                   users: dict[str, str] | None = None) -> RunningRegistry:
    import bcrypt

    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth == "basic":
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text("".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in (users or {}).items()
        ))
        config["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(htpasswd)}}
    elif auth == "token":
        assert issuer is not None
        config["auth"] = {"token": {
            "realm": issuer.realm, "service": issuer.service, "issuer": issuer.issuer,
            "rootcertbundle": str(issuer.cert_path),
        }}
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "registry.log"
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config_path)], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    reg = RunningRegistry(f"127.0.0.1:{port}", storage, proc, log, users or {})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=1)
            return reg
        except urllib.error.HTTPError:
            return reg  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError("docker-registry did not start")


class TokenIssuer:
    """A minimal token service: grants `users` (or anonymous pulls when allowed) what they ask for."""

    def __init__(self, workdir: Path, users: dict[str, str], anonymous_pull: bool = False) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users, self.anonymous_pull = users, anonymous_pull
        self.service, self.issuer = "hostrt-test-registry", "hostrt-test-issuer"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostrt test token issuer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = workdir / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.requests: list[dict] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                issuer.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(req.path).query)
        user = None
        header = req.headers.get("Authorization", "")
        if header.startswith("Basic "):
            u, _, p = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(u) != p:
                req.send_response(401)
                req.end_headers()
                return
            user = u
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull" and self.anonymous_pull]
            if granted:
                access.append({"type": kind, "name": repo, "actions": granted})
        self.requests.append({"user": user, "scopes": query.get("scope", [])})
        token = self.sign({
            "iss": self.issuer, "sub": user or "", "aud": query.get("service", [""])[0],
            "exp": int(time.time()) + 300, "nbf": int(time.time()) - 10, "iat": int(time.time()),
            "jti": secrets.token_hex(8), "access": access,
        })
        body = json.dumps({"token": token}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def sign(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def stop(self) -> None:
        self.server.shutdown()


class CuttingProxy:
    """A TCP proxy to a registry that drops one connection after `cut_after` response bytes.

    Stands in for a flaky network: the registry stays real, the connection breaks mid-blob.
    """

    def __init__(self, upstream: str, cut_after: int) -> None:
        self.upstream = upstream.rsplit(":", 1)
        self.cut_after = cut_after
        self.cuts = 0
        self.requests: list[bytes] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, is_response: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if not is_response:
                    self.requests.append(data)
                elif self.cuts == 0 and sent + len(data) > self.cut_after:
                    self.cuts += 1
                    dst.sendall(data[: self.cut_after - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self) -> None:
        self.listener.close()
