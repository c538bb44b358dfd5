"""Download files in the data.binance.vision layout: verified, resumable, atomic, with progress.

For each ``RemoteFile`` (``lbml.data.binance_vision``):

- a file already on disk with its ``.CHECKSUM`` next to it and a matching SHA-256 is skipped
  without touching the network;
- otherwise its ``.CHECKSUM`` is fetched, and the data goes to a hidden ``.NAME.part`` file. A
  ``.part`` left by an interrupted download is continued with an HTTP ``Range`` request (a server
  that ignores the range sends the whole file, which then replaces the partial one);
- the finished ``.part`` is hashed; on a mismatch it is deleted and the command fails with one line;
  on a match the checksum is written next to the final name and the ``.part`` is renamed into place.

So a file under its final name is always complete and verified; anything else is hidden.
"""

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lbml.atomic import write_atomic
from lbml.data.binance_vision import RemoteFile
from lbml.errors import ConfigError, DataError

_SHA256 = re.compile(r"^([0-9a-fA-F]{64})(?:\s+\*?(\S+))?\s*$")


@dataclass(frozen=True)
class DownloadConfig:
    """Where from, where to, and how."""

    base_url: str
    out_dir: Path
    progress: bool = False  # a tqdm bar per file, on stderr
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 16

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ConfigError(f"--base-url: expected an http(s) URL, got {self.base_url!r}")
        if self.timeout_s <= 0 or self.chunk_bytes <= 0:
            raise ConfigError("download: timeout and chunk size must be > 0")

    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path}"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    skipped: bool  # already on disk and verified: nothing was fetched
    resumed_from: int = 0  # bytes of an earlier interrupted download that were kept


def download_files(files: list[RemoteFile], config: DownloadConfig) -> list[Downloaded]:
    """Fetch and verify ``files`` in order; raise ``DataError`` (one line) on the first failure."""
    return [download_file(f, config) for f in files]


def download_file(remote: RemoteFile, config: DownloadConfig) -> Downloaded:
    final = Path(config.out_dir) / remote.local_path
    checksum_file = final.with_name(final.name + ".CHECKSUM")
    if final.is_file() and checksum_file.is_file():
        expected = _parse_checksum(checksum_file.read_text(errors="replace"), str(checksum_file), remote.name)
        if _sha256(final) == expected:
            return Downloaded(final, expected, skipped=True)
    checksum_text = _fetch_text(config, remote.checksum_path)
    expected = _parse_checksum(checksum_text, config.url(remote.checksum_path), remote.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(f".{final.name}.part")
    resumed_from = _fetch_to(config, remote.path, part)
    actual = _sha256(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DataError(f"{config.url(remote.path)}: checksum mismatch (sha256 {actual}, its .CHECKSUM says "
                        f"{expected}); the download was deleted")
    write_atomic(checksum_file, checksum_text)
    os.replace(part, final)
    return Downloaded(final, expected, skipped=False, resumed_from=resumed_from)


def _fetch_text(config: DownloadConfig, path: str) -> str:
    url = config.url(path)
    with _open(url, config, {}) as response:
        try:
            return response.read(1 << 16).decode("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{url}: unreadable checksum file ({exc})") from None


def _fetch_to(config: DownloadConfig, path: str, part: Path) -> int:
    """Download ``path`` into ``part``, continuing what is there; return the bytes kept from before."""
    url = config.url(path)
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with _open(url, config, headers, range_ok=bool(have)) as response:
        status = response.status
        if status == 416:  # nothing after `have`: the partial file is no prefix of this one
            part.unlink()
            return _fetch_to(config, path, part)
        if status == 206:
            start = _range_start(response.headers.get("Content-Range"), url)
            if start != have:
                raise DataError(f"{url}: the server resumed at byte {start}, not {have}")
        else:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        got = have
        with open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[1:-5],
            disable=not config.progress, file=sys.stderr, leave=False,
        ) as bar:
            while True:
                try:
                    chunk = response.read(config.chunk_bytes)
                except (OSError, http.client.HTTPException) as exc:  # reset, timeout, cut short
                    raise DataError(f"{url}: download interrupted after {got:,} bytes ({_reason(exc)}); "
                                    "run the command again to resume") from None
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got < total:
        raise DataError(f"{url}: download interrupted after {got:,} of {total:,} bytes; run the command again "
                        "to resume")
    return have


def _open(url: str, config: DownloadConfig, headers: dict[str, str], *, range_ok: bool = False):
    request = urllib.request.Request(url, headers={"User-Agent": "lbml"} | headers)
    try:
        return urllib.request.urlopen(request, timeout=config.timeout_s)  # noqa: S310 - http(s) checked
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and range_ok:
            return exc  # an HTTPError is a response: the caller restarts without the range
        hint = ": no such file (check the symbol, the dates and --period)" if exc.code == 404 else ""
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DataError(f"{url}: cannot download ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


def _range_start(content_range: str | None, url: str) -> int:
    match = re.match(r"^bytes (\d+)-\d+/(\d+|\*)$", content_range or "")
    if match is None:
        raise DataError(f"{url}: partial response without a valid Content-Range ({content_range!r})")
    return int(match.group(1))


def _parse_checksum(text: str, source: str, name: str) -> str:
    match = _SHA256.match(text.strip())
    if match is None:
        raise DataError(f"{source}: not a SHA-256 checksum file")
    if match.group(2) is not None and match.group(2) != name:
        raise DataError(f"{source}: checksum is for {match.group(2)}, not {name}")
    return match.group(1).lower()


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
