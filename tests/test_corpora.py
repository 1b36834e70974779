"""Corpora: the catalog, resolution order (mirror, cache, verified download) and decoding errors."""

import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path

import pytest

import seqtool.data.corpora as corpora
from seqtool.data.corpora import (CatalogEntry, decode_text, download, load_catalog, locate, read_bytes, read_text, resolve_corpus,
                                  sha256_of)
from seqtool.core.errors import SeqtoolError

ROOT = Path(__file__).resolve().parents[1]

CONTENT = b"the time traveller (for so it will be convenient to speak of him)\n"
NAME = "tiny"
FILE = "seqtool-test-tiny-corpus.txt"  # a name no real mirror holds


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_catalog(tmp_path, monkeypatch):
    """A one-entry catalog whose source is a local file:// URL; mirror and cache are temp dirs."""
    source = tmp_path / "source" / FILE
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    entry = CatalogEntry(name=NAME, file=FILE, url=source.as_uri(), sha256=sha(CONTENT), license="test", description="test")
    catalog = {NAME: entry}
    monkeypatch.setattr(corpora, "load_catalog", lambda path=None: catalog)
    monkeypatch.delenv("SEQTOOL_MIRROR", raising=False)
    monkeypatch.setenv("SEQTOOL_CACHE", str(tmp_path / "cache"))
    return catalog


def set_entry(catalog: dict, **changes) -> CatalogEntry:
    import dataclasses

    catalog[NAME] = dataclasses.replace(catalog[NAME], **changes)
    return catalog[NAME]


# ---- the catalog -------------------------------------------------------------------------------
def test_catalog_lists_every_shared_corpus_with_its_checksum():
    catalog = load_catalog()
    by_file = {entry.file: entry for entry in catalog.values()}
    shared = sorted(p for p in (ROOT.parent / "shared" / "corpora").iterdir() if p.is_file())
    assert shared, "../shared/corpora is missing"
    for path in shared:  # every shared file is known by name, and its bytes are the ones the catalog promises
        assert path.name in by_file, path.name
        assert sha256_of(path) == by_file[path.name].sha256, path.name
    for name, entry in catalog.items():
        assert entry.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), name
        assert entry.url.startswith("https://"), name
        assert entry.file and entry.license and entry.description, name
    assert catalog["fra-eng"].member == "fra.txt"
    assert catalog["timemachine"].member is None


def test_real_timemachine_resolves_by_name_from_a_mirror_and_verifies():
    entry = load_catalog()["timemachine"]
    if not any((d / entry.file).is_file() for d in corpora.mirror_dirs()):
        pytest.skip("no local mirror of the Time Machine (SEQTOOL_MIRROR or ../shared/corpora)")
    path = locate("timemachine", allow_download=False)
    assert path.name == entry.file
    assert corpora.sha256_of(path) == entry.sha256
    assert resolve_corpus("timemachine") == path


# ---- resolution --------------------------------------------------------------------------------
def test_dash_means_stdin_and_an_existing_path_is_used_as_is(tmp_path, fake_catalog):
    assert resolve_corpus("-") == "-"
    own = tmp_path / NAME  # a file named like a catalog entry: the path wins
    own.write_text("mine")
    assert resolve_corpus(str(own)) == own


def test_unknown_name_lists_the_catalog(fake_catalog):
    with pytest.raises(SeqtoolError, match=r"no such file or catalog corpus: nosuchthing \(catalog names: tiny\)"):
        resolve_corpus("nosuchthing")


def test_mirror_wins_over_the_cache(tmp_path, fake_catalog, monkeypatch):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    for d in (mirror, cache):
        d.mkdir(exist_ok=True)
        (d / FILE).write_bytes(CONTENT)
    monkeypatch.setenv("SEQTOOL_MIRROR", str(mirror))
    assert resolve_corpus(NAME) == mirror / FILE
    monkeypatch.delenv("SEQTOOL_MIRROR")
    assert resolve_corpus(NAME) == cache / FILE


def test_a_mirror_file_with_a_wrong_checksum_is_refused(tmp_path, fake_catalog, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / FILE).write_bytes(CONTENT + b"tampered\n")
    monkeypatch.setenv("SEQTOOL_MIRROR", str(mirror))
    with pytest.raises(SeqtoolError, match=f"checksum mismatch for corpus '{NAME}'"):
        resolve_corpus(NAME)


def test_missing_everywhere_without_download_says_how_to_provide_it(fake_catalog):
    with pytest.raises(SeqtoolError, match=f"put {FILE} in a directory and set SEQTOOL_MIRROR"):
        locate(NAME, allow_download=False)


# ---- download ----------------------------------------------------------------------------------
def test_download_from_a_file_url_lands_verified_in_the_cache(tmp_path, fake_catalog):
    cache = tmp_path / "cache"
    path = resolve_corpus(NAME)
    assert path == cache / FILE
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in cache.iterdir()) == [FILE]  # no temp file left behind
    # the next lookup uses the cache, not the network
    set_entry(fake_catalog, url=(tmp_path / "gone.txt").as_uri())
    assert resolve_corpus(NAME) == cache / FILE


def test_download_with_a_bad_checksum_fails_and_leaves_no_file(tmp_path, fake_catalog):
    entry = set_entry(fake_catalog, sha256=sha(b"something else"))
    cache = tmp_path / "cache"
    with pytest.raises(SeqtoolError, match="checksum mismatch"):
        resolve_corpus(NAME)
    assert list(cache.iterdir()) == []
    with pytest.raises(SeqtoolError, match="checksum mismatch"):
        download(entry, tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_download_extracts_a_zip_member(tmp_path, fake_catalog):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "not this one")
        zf.writestr("fra.txt", CONTENT)
    entry = set_entry(fake_catalog, url=archive.as_uri(), member="fra.txt")
    path = download(entry, tmp_path / "dl")
    assert path.read_bytes() == CONTENT
    with pytest.raises(SeqtoolError, match="cannot extract missing.txt"):
        download(set_entry(fake_catalog, member="missing.txt"), tmp_path / "dl2")


def test_an_unreachable_source_gives_one_error_that_says_how_to_provide_the_file(tmp_path, fake_catalog):
    set_entry(fake_catalog, url=(tmp_path / "does-not-exist.txt").as_uri())
    with pytest.raises(SeqtoolError) as exc:
        resolve_corpus(NAME)
    message = str(exc.value)
    assert "not available offline" in message and "SEQTOOL_MIRROR" in message and FILE in message
    assert not (tmp_path / "cache" / FILE).exists()


# ---- reading and decoding ----------------------------------------------------------------------
def test_decode_text_refuses_empty_and_whitespace_only():
    for data in (b"", b"  \n\t\n"):
        with pytest.raises(SeqtoolError, match="corpus.txt is empty"):
            decode_text(data, "corpus.txt")


def test_decode_text_refuses_binary_data():
    with pytest.raises(SeqtoolError, match="looks like a binary file"):
        decode_text(b"PK\x03\x04\x00\x00binary", "x.bin")


def test_decode_text_accepts_nul_bytes_in_utf16_and_utf32():
    text = "caf\u00e9 au lait\n"
    assert decode_text(text.encode("utf-16"), "x", encoding="utf-16") == text
    assert decode_text(text.encode("utf-16-le"), "x", encoding="UTF-16LE") == text
    assert decode_text(text.encode("utf-32"), "x", encoding="utf-32") == text
    with pytest.raises(SeqtoolError, match="looks like a binary file"):
        decode_text(text.encode("utf-16"), "x", encoding="latin-1")


def test_decode_text_names_the_first_bad_byte_and_its_offset():
    with pytest.raises(SeqtoolError) as exc:
        decode_text("abc".encode() + b"\xff" + "d\u00e9f".encode(), "latin.txt")
    message = str(exc.value)
    assert "latin.txt is not valid utf-8 (byte 0xff at offset 3)" in message
    assert "--encoding" in message and "--encoding-errors replace" in message


def test_decode_text_replace_ignore_and_other_encodings():
    data = b"caf\xe9 au lait"
    assert decode_text(data, "x", errors="replace") == "caf\ufffd au lait"
    assert decode_text(data, "x", errors="ignore") == "caf au lait"
    assert decode_text(data, "x", encoding="latin-1") == "caf\u00e9 au lait"
    with pytest.raises(SeqtoolError, match="unknown encoding 'klingon'"):
        decode_text(data, "x", encoding="klingon")


def test_read_text_from_a_path_and_from_stdin(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    path.write_bytes("h\u00e9llo\n".encode())
    assert read_text(str(path)) == "h\u00e9llo\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\n")))
    assert read_text("-") == "from stdin\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(SeqtoolError, match="standard input is empty"):
        read_text("-")


def test_read_bytes_errors(tmp_path):
    with pytest.raises(SeqtoolError, match="is a directory"):
        read_bytes(tmp_path)
    with pytest.raises(SeqtoolError, match="no such file"):
        read_bytes(Path(tmp_path / "missing.txt"))
