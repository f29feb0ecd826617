"""A client for one registry host (OCI distribution API v2) over a requests Session.

Knows repositories, digests and bytes; it never touches the store except through the
blob writer it is handed. Plain HTTP only for loopback hosts and `--insecure-registry`.
Every manifest it returns has been checked against the digest asked for (or the one the
registry announced); blobs are checked by the store's writer on commit.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin

import requests

from hostrt.images import digest as digests
from hostrt.images import oci
from hostrt.images.auth import Authenticator, Credentials
from hostrt.images.errors import AuthError, DigestMismatchError, ImageNotFoundError, RegistryError
from hostrt.images.progress import SILENT, Progress
from hostrt.images.store import BlobWriter

TIMEOUT = (10, 60)  # connect, read (seconds between bytes)
RETRIES = 5
MAX_MANIFEST = 4 << 20  # the distribution spec's limit; a bigger "manifest" is an attack on memory
_CHUNK = 1 << 20
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    """One registry host; thread-safe for parallel blob transfers."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        insecure: Iterable[str] = (),
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.host = host
        self.scheme = "http" if is_loopback(host) or host in set(insecure) else "https"
        self.base = f"{self.scheme}://{host}"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "hostrt"
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.auth = Authenticator(host, credentials)

    # -- plumbing ------------------------------------------------------------------------
    def _request(self, method: str, url: str, scope: str, **kw: Any) -> requests.Response:
        """Send a request, answering one auth challenge; raise RegistryError when unreachable."""
        if not url.startswith("http"):
            url = self.base + url
        headers = dict(kw.pop("headers", {}) or {})
        header = self.auth.header(scope)
        if header:
            headers["Authorization"] = header
        kw.setdefault("timeout", self.timeout)
        body = kw.get("data")
        try:
            resp = self.session.request(method, url, headers=headers, **kw)
            if resp.status_code == 401 and "WWW-Authenticate" in resp.headers:
                resp.close()
                headers["Authorization"] = self.auth.answer(
                    self.session, resp.headers["WWW-Authenticate"], scope, self.timeout
                )
                if hasattr(body, "seek"):
                    body.seek(0)
                resp = self.session.request(method, url, headers=headers, **kw)
        except requests.exceptions.SSLError as err:
            raise RegistryError(f"{self.host}: TLS failed ({err.__class__.__name__}); for a plain-HTTP registry use --insecure-registry {self.host}") from None
        except _TRANSIENT as err:
            raise RegistryError(f"cannot reach registry {self.host}: {_short(err)}") from None
        if resp.status_code == 401:
            raise AuthError(f"{self.host}: unauthorized for {scope}{_error_detail(resp)}")
        return resp

    def _fail(self, resp: requests.Response, what: str) -> RegistryError:
        if resp.status_code == 404:
            return ImageNotFoundError(f"{what}: not found on {self.host}{_error_detail(resp)}")
        if resp.status_code == 403:
            return AuthError(f"{what}: denied by {self.host}{_error_detail(resp)}")
        return RegistryError(f"{what}: {self.host} answered {resp.status_code}{_error_detail(resp)}")

    @staticmethod
    def scope(repo: str, push: bool = False) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def ping(self) -> None:
        """GET /v2/: reachable, speaks the API, and (after a login) accepts our credentials."""
        resp = self._request("GET", "/v2/", "registry:catalog:*")
        if resp.status_code != 200:
            raise self._fail(resp, "ping")

    # -- manifests -----------------------------------------------------------------------
    def get_manifest(self, repo: str, target: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, verified."""
        resp = self._request(
            "GET", f"/v2/{repo}/manifests/{target}", self.scope(repo), headers={"Accept": oci.ACCEPT}, stream=True
        )
        if resp.status_code != 200:
            raise self._fail(resp, f"manifest {repo}:{target}")
        data = resp.raw.read(MAX_MANIFEST + 1, decode_content=True)
        resp.close()
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"manifest {repo}:{target} is larger than {MAX_MANIFEST} bytes: refused")
        actual = digests.of_bytes(data)
        expected = target if target.startswith("sha256:") else resp.headers.get("Docker-Content-Digest", actual)
        if actual != expected:
            raise DigestMismatchError(f"manifest {repo}:{target} has digest {actual}, expected {expected}")
        media_type = oci.media_type_of(data, resp.headers.get("Content-Type", "").split(";")[0].strip())
        return data, media_type, actual

    def put_manifest(self, repo: str, target: str, data: bytes, media_type: str) -> str:
        resp = self._request(
            "PUT", f"/v2/{repo}/manifests/{target}", self.scope(repo, push=True),
            data=data, headers={"Content-Type": media_type},
        )
        if resp.status_code not in (200, 201, 202):
            raise self._fail(resp, f"push manifest {repo}:{target}")
        return resp.headers.get("Docker-Content-Digest", digests.of_bytes(data))

    # -- blobs ---------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str, push: bool = False) -> bool:
        resp = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", self.scope(repo, push))
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"blob {digest}")

    def fetch_blob(self, repo: str, desc: oci.Descriptor, writer: BlobWriter, progress: Progress = SILENT) -> None:
        """Stream a blob into `writer`, resuming with Range after a dropped connection."""
        key = desc.digest
        progress.start(key, f"{digests.hex_of(desc.digest)[:12]}", desc.size)
        progress.advance(key, writer.offset)
        for attempt in range(RETRIES):
            headers = {"Range": f"bytes={writer.offset}-"} if writer.offset else {}
            try:
                resp = self._request("GET", f"/v2/{repo}/blobs/{desc.digest}", self.scope(repo), headers=headers, stream=True)
                with resp:
                    if resp.status_code == 416 and writer.offset == desc.size:
                        return  # everything was already here
                    if resp.status_code not in (200, 206):
                        raise self._fail(resp, f"blob {desc.digest}")
                    if resp.status_code == 200 and writer.offset:
                        progress.advance(key, -writer.offset)
                        writer.restart()  # the server ignored Range: start over
                    for chunk in resp.iter_content(_CHUNK):
                        writer.write(chunk)
                        progress.advance(key, len(chunk))
                return
            except (RegistryError, *_TRANSIENT) as err:
                transient = isinstance(err, _TRANSIENT) or "cannot reach" in str(err)
                if not transient or attempt == RETRIES - 1:
                    raise RegistryError(f"blob {desc.digest}: {_short(err)}") from None
                time.sleep(min(0.2 * 2**attempt, 3))

    def push_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        open_blob: Callable[[], BinaryIO],
        progress: Progress = SILENT,
        chunk_size: int | None = None,
        mount_from: str | None = None,
    ) -> str:
        """Upload a blob unless the registry has it; returns 'exists', 'mounted' or 'pushed'."""
        if self.blob_exists(repo, digest, push=True):
            return "exists"
        scope = self.scope(repo, push=True)
        query = {"mount": digest, "from": mount_from} if mount_from else {}
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/?{urlencode(query)}", scope)
        if resp.status_code == 201 and mount_from:
            return "mounted"
        if resp.status_code != 202:
            raise self._fail(resp, f"start upload of {digest}")
        location = urljoin(self.base + "/", resp.headers["Location"])
        key = digest
        progress.start(key, digests.hex_of(digest)[:12], size)
        with open_blob() as f:
            if chunk_size:
                offset = 0
                while offset < size:
                    chunk = f.read(chunk_size)
                    resp = self._request(
                        "PATCH", location, scope, data=chunk,
                        headers={"Content-Type": "application/octet-stream",
                                 "Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
                    )
                    if resp.status_code != 202:
                        raise self._fail(resp, f"upload chunk of {digest}")
                    location = urljoin(self.base + "/", resp.headers["Location"])
                    offset += len(chunk)
                    progress.advance(key, len(chunk))
                resp = self._request("PUT", _with_digest(location, digest), scope, headers={"Content-Length": "0"})
            else:
                resp = self._request(
                    "PUT", _with_digest(location, digest), scope,
                    data=_Counting(f, size, lambda n: progress.advance(key, n)),
                    headers={"Content-Type": "application/octet-stream"},
                )
        if resp.status_code != 201:
            raise self._fail(resp, f"upload of {digest}")
        return "pushed"


class _Counting:
    """A file-like body that reports how much was read (requests streams it)."""

    def __init__(self, f: BinaryIO, size: int, on_read: Callable[[int], None]) -> None:
        self.f, self.size, self.on_read = f, size, on_read

    def __len__(self) -> int:  # lets requests send a Content-Length instead of chunked encoding
        return self.size

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n if n and n > 0 else _CHUNK)
        self.on_read(len(data))
        return data

    def seek(self, *args: int) -> int:
        return self.f.seek(*args)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}"


def _error_detail(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        if errors:
            e = errors[0]
            return f" ({e.get('code', '')}: {e.get('message', '')})"
    except (ValueError, AttributeError):
        pass
    return ""


def _short(err: BaseException) -> str:
    text = str(err)
    return text if len(text) < 200 else text[:200] + "..."
