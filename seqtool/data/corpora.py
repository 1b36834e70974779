"""Where corpora come from: a path, stdin ('-') or a catalog name.

Catalog names resolve, in order, to SEQTOOL_MIRROR, ../shared/corpora (beside the checkout or the
working directory), the download cache (SEQTOOL_CACHE, default ~/.cache/seqtool), and finally a
download verified against the catalog's sha256. Every file is checked before it is used.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import stat
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from seqtool.core.errors import SeqtoolError, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG_PATH = REPO_ROOT / "corpora" / "catalog.yaml"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    file: str
    url: str
    sha256: str
    license: str
    description: str
    member: str | None = None


def load_catalog(path: Path = CATALOG_PATH) -> dict[str, CatalogEntry]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {name: CatalogEntry(name=name, **fields) for name, fields in raw.items()}


def mirror_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SEQTOOL_MIRROR"):
        dirs.append(Path(os.environ["SEQTOOL_MIRROR"]))
    for base in (REPO_ROOT.parent, Path.cwd().parent):
        candidate = base / "shared" / "corpora"
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
    return dirs


def cache_dir() -> Path:
    return Path(os.environ.get("SEQTOOL_CACHE", Path.home() / ".cache" / "seqtool"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, entry: CatalogEntry) -> Path:
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise SeqtoolError(
            f"{path}: checksum mismatch for corpus '{entry.name}' (sha256 {actual[:12]}..., expected {entry.sha256[:12]}...)"
        )
    return path


def download(entry: CatalogEntry, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Fetch a catalog corpus into dest_dir atomically, verifying its checksum before it lands."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response:
            payload = response.read()
    except (OSError, ValueError) as exc:
        raise SeqtoolError(
            f"corpus '{entry.name}' is not available offline and the download from {entry.url} failed ({exc}); "
            f"put {entry.file} in a directory and set SEQTOOL_MIRROR to it"
        ) from None
    if entry.member:
        try:
            payload = zipfile.ZipFile(io.BytesIO(payload)).read(entry.member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise SeqtoolError(f"corpus '{entry.name}': cannot extract {entry.member} from {entry.url}: {exc}") from None
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{entry.file}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        _verified(Path(tmp), entry)
        os.replace(tmp, dest_dir / entry.file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest_dir / entry.file


def locate(name: str, allow_download: bool = True) -> Path:
    """Path of a verified local copy of a catalog corpus."""
    catalog = load_catalog()
    entry = catalog[name]
    for directory in [*mirror_dirs(), cache_dir()]:
        candidate = directory / entry.file
        if candidate.is_file():
            return _verified(candidate, entry)
    if not allow_download:
        raise SeqtoolError(f"corpus '{name}' not found; put {entry.file} in a directory and set SEQTOOL_MIRROR to it")
    return download(entry, cache_dir())


def resolve_corpus(arg: str) -> str | Path:
    """'-' stays '-' (stdin); an existing path is used as is; else a catalog name; else an error."""
    if arg == "-":
        return "-"
    path = Path(arg)
    if path.exists():
        return path
    catalog = load_catalog()
    if arg in catalog:
        return locate(arg)
    names = ", ".join(catalog)
    raise SeqtoolError(f"no such file or catalog corpus: {arg} (catalog names: {names})")


def check_regular_file(path: Path) -> None:
    """Only regular files are read by name: a named pipe or a device could block forever or never
    end (/dev/zero). Data from a pipe comes through '-' (standard input)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SeqtoolError(f"no such file: {path}") from None
    except OSError as exc:
        raise SeqtoolError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise SeqtoolError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode) else
                "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise SeqtoolError(f"{path} is {kind}, not a regular file; save the data to a file, or send it to standard input with '-'")


_stdin: tuple[object, bytes] | None = None  # (stream, its bytes): a command may read its data twice (--model auto)


def read_bytes(source: str | Path) -> bytes:
    global _stdin
    if source == "-":
        if _stdin is None or _stdin[0] is not sys.stdin.buffer:
            _stdin = (sys.stdin.buffer, sys.stdin.buffer.read())
        return _stdin[1]
    path = Path(source)
    check_regular_file(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SeqtoolError(f"no such file: {path}") from None
    except OSError as exc:
        raise SeqtoolError(f"cannot read {path}: {exc.strerror or exc}") from None


def decode_text(data: bytes, name: str, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Bytes -> text, refusing binary data and naming the first undecodable byte.

    The policy for bytes that are not valid in `encoding` is `errors`: strict (refuse the file,
    naming the byte and its offset), replace (each becomes U+FFFD) or ignore (dropped). A leading
    byte-order mark is dropped. Text with NUL characters is refused as binary.
    """
    if errors not in ("strict", "replace", "ignore"):
        raise UsageError(f"--encoding-errors: {errors!r} is not one of strict, replace, ignore")
    if not data:
        raise SeqtoolError(f"{name} is empty")
    encoding = encoding_of_bom(data, encoding)
    try:
        wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))  # NUL bytes are normal there
    except (LookupError, TypeError, ValueError):
        raise UsageError(f"unknown encoding {encoding!r} (e.g. utf-8, latin-1, utf-16, cp1252)") from None
    if not wide and b"\x00" in data[:65536]:
        raise SeqtoolError(f"{name} looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode(encoding, errors=errors)
    except LookupError:
        raise UsageError(f"{encoding!r} is not a text encoding") from None
    except UnicodeDecodeError as exc:
        raise SeqtoolError(
            f"{name} is not valid {encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"pass --encoding (e.g. latin-1) or --encoding-errors replace"
        ) from None
    except (UnicodeError, ValueError) as exc:
        raise SeqtoolError(f"{name} cannot be decoded as {encoding}: {exc}") from None
    if "\x00" in text[:65536]:
        raise SeqtoolError(f"{name} looks like a binary file (it contains NUL characters), not {encoding} text")
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SeqtoolError(f"{name} is empty (only whitespace)" if text else f"{name} is empty after decoding")
    return text


#: byte-order marks of the wide Unicode encodings (UTF-32 first: its little-endian mark starts like UTF-16's)
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def encoding_of_bom(data: bytes, encoding: str) -> str:
    """A UTF-16/32 byte-order mark says how the file is encoded: it wins over the utf-8 default (a
    file that says so is not binary). An encoding the user chose otherwise stays."""
    try:
        default = codecs.lookup(encoding).name == "utf-8"
    except (LookupError, TypeError, ValueError):
        return encoding
    for bom, wide in _WIDE_BOMS:
        if default and data.startswith(bom):
            return wide
    return encoding


def read_text(arg: str, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Text of a corpus argument (path, '-' or catalog name) with clear errors for bad files."""
    source = resolve_corpus(arg)
    name = "standard input" if source == "-" else str(source)
    return decode_text(read_bytes(source), name, encoding, errors)


def peek(corpus: str | None, size: int) -> bytes | None:
    """The first `size` bytes of a corpus that is a regular file (None for stdin, pipes, devices and
    what cannot be opened: they are not peeked at, reading them later says what is wrong)."""
    if not corpus or corpus == "-":
        return None
    try:
        path = Path(resolve_corpus(corpus))
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            return fh.read(size)
    except (SeqtoolError, OSError):
        return None


def peek_header(corpus: str | None) -> str | None:
    """The first line of a corpus file (see peek), or None."""
    head = peek(corpus, 1 << 14)
    return None if head is None else head.decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
