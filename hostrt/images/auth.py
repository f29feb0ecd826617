"""Registry credentials and the token dance.

Credentials come from `hostrt login` (a docker-style `auth.json` in the hostrt root, mode
0600) and then from docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`), plain
`auths` entries only: credential helpers are not run. A 401 carries a
`WWW-Authenticate` challenge: `Basic` means send the credentials, `Bearer realm=...`
means fetch a token for the scope from the realm (with the credentials, if any).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostrt.images.errors import AuthError
from hostrt.paths import Paths

_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def auth_file(paths: Paths | None = None) -> Path:
    return (paths or Paths.default()).root / "auth.json"


def _docker_config() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def _keys_for(host: str) -> tuple[str, ...]:
    if host in ("docker.io", "registry-1.docker.io"):
        return _DOCKER_HUB_KEYS
    return (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/")


def _from_entry(entry: dict[str, Any]) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""))
    return None


def _read_auths(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, OSError) as err:
        raise AuthError(f"cannot read credentials from {path}: {err}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else {}
    return auths if isinstance(auths, dict) else {}


def find_credentials(host: str, paths: Paths | None = None) -> Credentials | None:
    """Credentials for a registry host, hostrt's own first, then docker's."""
    for path in (auth_file(paths), _docker_config()):
        auths = _read_auths(path)
        for key in _keys_for(host):
            if key in auths and isinstance(auths[key], dict):
                creds = _from_entry(auths[key])
                if creds:
                    return creds
    return None


def _write_auths(path: Path, auths: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".auth-{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"auths": auths}, f, indent=2)
    os.replace(tmp, path)


def save_credentials(host: str, creds: Credentials, paths: Paths | None = None) -> Path:
    path = auth_file(paths)
    auths = _read_auths(path)
    auths[host] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    _write_auths(path, auths)
    return path


def remove_credentials(host: str, paths: Paths | None = None) -> bool:
    path = auth_file(paths)
    auths = _read_auths(path)
    if host not in auths:
        return False
    del auths[host]
    _write_auths(path, auths)
    return True


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


class Authenticator:
    """Answers challenges for one registry host and caches what it learnt (per scope for tokens)."""

    def __init__(self, host: str, credentials: Credentials | None) -> None:
        self.host = host
        self.credentials = credentials
        self._scheme: str | None = None
        self._params: dict[str, str] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> str | None:
        """The Authorization header to send for `scope`, if we already know one."""
        with self._lock:
            if self._scheme == "basic" and self.credentials:
                return self.credentials.basic_header()
            token = self._tokens.get(scope)
            return f"Bearer {token}" if token else None

    def answer(self, session: Any, challenge: str, scope: str, timeout: Any) -> str:
        """Handle a 401's challenge; returns the header to retry with, or raises AuthError."""
        scheme, params = parse_challenge(challenge)
        with self._lock:
            self._scheme, self._params = scheme, params
        if scheme == "basic":
            if not self.credentials:
                raise AuthError(f"{self.host} requires a login: run `hostrt login {self.host}`")
            return self.credentials.basic_header()
        if scheme != "bearer" or "realm" not in params:
            raise AuthError(f"{self.host} asks for unsupported authentication {challenge!r}")
        query = {"service": params["service"]} if params.get("service") else {}
        # A challenge may ask for several scopes at once, space-separated (a cross-repo mount).
        scopes = sorted({*(params.get("scope") or "").split(), scope} - {""})
        headers = {"Authorization": self.credentials.basic_header()} if self.credentials else {}
        try:
            resp = session.get(params["realm"], params={**query, "scope": scopes}, headers=headers, timeout=timeout)
        except Exception as err:  # requests' errors; the module is not imported here
            raise AuthError(f"cannot reach the token service {params['realm']} of {self.host}: {err}") from None
        if resp.status_code in (401, 403):
            who = f"as {self.credentials.username}" if self.credentials else "anonymously"
            raise AuthError(f"{self.host}: token service refused access {who} to {scope} ({resp.status_code})")
        if resp.status_code != 200:
            raise AuthError(f"{self.host}: token service {params['realm']} answered {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise AuthError(f"{self.host}: token service {params['realm']} sent no token")
        with self._lock:
            self._tokens[scope] = token
        return f"Bearer {token}"
