"""The file: a ZIP archive of ``manifest.json`` and ``tensors.safetensors``.

Reading checks, in this order, before anything is built:

1. the archive's layout: its two uncompressed entries and nothing else,
   the first at byte 0 (no pickle or other bytes before it, so the file
   is no polyglot), each right after the other, the central directory
   right after them and no comment;
2. the manifest's size and shape, from its bytes alone, before it is
   parsed: nesting depth, and the memory its parse would take (bounded by
   a small multiple of the file's size);
3. the manifest's format and version;
4. the SHA-256 digest of the tree and the tensor bytes (a corruption
   check: anyone can recompute it), and, when a key is given, the
   HMAC-SHA256 signature (an authenticity check: only a key holder can
   make it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import struct
import zipfile

from ._trust import UnsafeFileError

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
FORMAT = "skggda"
VERSION = 1

#: Deepest nesting of JSON containers a manifest may have (a saved estimator
#: needs about 4 levels per nested object; Python's parser recurses on each).
MAX_DEPTH = 200
#: What parsing the manifest may take: a multiple of the file's size plus an allowance.
MAX_PARSE_RATIO = 6
PARSE_ALLOWANCE = 1 << 20

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a ZIP entry's local file header
_END_RECORD_SIZE = 22  # the end of central directory record, without a comment

try:  # an optional dependency, imported with the package so that loading imports nothing
    import safetensors.torch as _safetensors_torch
except ImportError:  # pragma: no cover - the io extra is missing
    _safetensors_torch = None


def _safetensors():
    if _safetensors_torch is None:
        raise ImportError("skggda.io needs the safetensors package: pip install 'skggda[io]'.")
    return _safetensors_torch


def canonical_json(node) -> bytes:
    """The one JSON text of ``node`` that the digest covers."""
    return json.dumps(node, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _content(root, payload):
    """The bytes the digest and the signature cover: canonical tree, newline, tensors."""
    return canonical_json(root) + b"\n" + payload


def digest(root, payload: bytes) -> str:
    """SHA-256 of the tree's canonical JSON, a newline, and the tensor bytes."""
    return hashlib.sha256(_content(root, payload)).hexdigest()


def signature(root, payload: bytes, key) -> str:
    """HMAC-SHA256 of the same bytes as :func:`digest`, under ``key``."""
    return hmac.new(_key_bytes(key), _content(root, payload), hashlib.sha256).hexdigest()


def _key_bytes(key):
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise TypeError(f"key must be non-empty bytes or str, got {type(key).__name__}.")
    return bytes(key)


def write(path, root, tensors, skggda_version, key=None):
    """Write the tree ``root`` and the ``{name: tensor}`` dict to ``path``."""
    payload = _safetensors().save(tensors)
    manifest = {"format": FORMAT, "version": VERSION, "skggda_version": skggda_version,
                "sha256": digest(root, payload), "root": root}
    if key is not None:
        manifest["hmac_sha256"] = signature(root, payload, key)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, canonical_json(manifest))
        archive.writestr(TENSORS, payload)


def read(path, key=None):
    """``(root, payload)`` of a verified file; :class:`UnsafeFileError` for anything else."""
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_layout(archive, path, size)
            manifest, payload = archive.read(MANIFEST), archive.read(TENSORS)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, KeyError, OSError,
            struct.error, ValueError, NotImplementedError) as exc:
        if isinstance(exc, UnsafeFileError):
            raise
        raise UnsafeFileError(f"{path} is not a complete skggda file (truncated?): "
                              f"{type(exc).__name__}: {exc}") from None
    check_manifest_bytes(manifest, size, path)
    try:
        manifest = json.loads(manifest)
    except (ValueError, RecursionError) as exc:
        raise UnsafeFileError(f"{path} has an unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UnsafeFileError(f"{path} is not a skggda file.")
    if manifest.get("version") != VERSION:
        raise UnsafeFileError(f"{path} has format version {str(manifest.get('version'))[:20]!r}"
                              f"; this skggda reads version {VERSION}.")
    _check_digests(manifest, payload, key, path)
    return manifest["root"], payload


def _check_digests(manifest, payload, key, path):
    root = manifest.get("root")
    try:
        content_digest = digest(root, payload)
    except (TypeError, ValueError) as exc:  # a tree that has no canonical JSON
        raise UnsafeFileError(f"{path} has a manifest tree of the wrong form: {exc}") from None
    if not hmac.compare_digest(str(manifest.get("sha256")), content_digest):
        raise UnsafeFileError(f"{path} has been altered or is corrupt: its SHA-256 digest "
                              "does not match its content. Nothing was loaded.")
    if key is None:
        return
    signed = manifest.get("hmac_sha256")
    if not isinstance(signed, str):
        raise UnsafeFileError(f"{path} is not signed, and a key was given: nothing was loaded.")
    if not hmac.compare_digest(signed, signature(root, payload, key)):
        raise UnsafeFileError(f"{path} was not signed with this key (or was altered after "
                              "signing): its HMAC-SHA256 does not match. Nothing was loaded.")


def load_tensors(payload, path):
    """The ``{name: tensor}`` dict of a verified payload."""
    try:
        return _safetensors().load(payload)
    except Exception as exc:  # safetensors' own error type is not public
        raise UnsafeFileError(f"{path} has unreadable tensors: {exc}") from None


def _check_layout(archive, path, size):
    """Exactly our two stored entries, back to back from byte 0 to the end of the file."""
    infos = archive.infolist()
    if [info.filename for info in infos] != [MANIFEST, TENSORS]:
        raise UnsafeFileError(f"{path} is not a skggda file: it holds "
                              f"{[info.filename for info in infos][:5]}.")
    if any(info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1
           or info.file_size != info.compress_size for info in infos):
        raise UnsafeFileError(f"{path} is not a skggda file: its entries are compressed "
                              "or encrypted.")
    end = 0
    for info in infos:
        if info.header_offset != end:
            raise UnsafeFileError(
                f"{path} has {info.header_offset - end} unexpected bytes before its entry "
                f"{info.filename!r} (a file with bytes before or between its entries, such "
                "as a pickle, is refused).")
        end = _entry_end(archive, info, size)
    directory_end = archive.start_dir + _directory_size(infos)
    if archive.start_dir != end or archive.comment or size != directory_end + _END_RECORD_SIZE:
        raise UnsafeFileError(f"{path} has bytes outside its two entries (a trailing "
                              "comment, a second archive or data after the directory).")


def _entry_end(archive, info, size):
    """Where the stored data of ``info`` ends, read from its local header."""
    archive.fp.seek(info.header_offset)
    header = archive.fp.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise UnsafeFileError(f"{path_of(archive)} has a broken entry header.")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + info.compress_size
    if end > size:
        raise UnsafeFileError(f"{path_of(archive)} declares an entry larger than the file.")
    return end


def path_of(archive):
    return getattr(archive, "filename", None) or "The file"


def _directory_size(infos):
    """Bytes of the central directory for these entries (46-byte records, names, extras)."""
    return sum(46 + len(info.orig_filename.encode()) + len(info.extra) + len(info.comment)
               for info in infos)


# A JSON token: a string (with escapes), a number, a literal, or one structural character.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null|[\[\]{}]')
#: Bytes CPython 3 (64-bit) takes for what the parser builds, measured: a small dict,
#: an empty list, a str object's header, an int or a float, a pointer in a container.
_SMALL_INT = re.compile(rb"-?[0-9]{1,2}$")  # CPython shares these int objects
_COST = {b"{": 184, b"[": 56, b'"': 49, "number": 32, "slot": 8}


def check_manifest_bytes(text, file_size, path):
    """Refuse a manifest too deep, or whose parse would take too much memory.

    Estimated from the bytes, before ``json.loads`` builds anything: every
    container, string and number the parser would make is charged what it
    takes in memory, and the total must stay under :data:`MAX_PARSE_RATIO`
    times the file's size plus :data:`PARSE_ALLOWANCE` (saved estimators'
    manifests measure 3.5-5 times their file's size).
    """
    depth = 0
    cost = 0
    keys = set()  # the parser keeps one copy of each distinct key
    budget = MAX_PARSE_RATIO * file_size + PARSE_ALLOWANCE
    for token in _TOKEN.finditer(text):
        first = token.group()[:1]
        if first in (b"]", b"}"):
            depth -= 1
            continue
        if first in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeFileError(f"{path} has a manifest nested deeper than {MAX_DEPTH} "
                                      "levels.")
            cost += _COST[first]
        elif first == b'"':
            string = token.group()
            if text[token.end():token.end() + 1] == b":":
                if string in keys:
                    continue
                keys.add(string)
            wide = not string.isascii() or b"\\u" in string
            cost += _COST[first] + (4 if wide else 1) * len(string)
        elif not _SMALL_INT.match(token.group()):
            cost += _COST["number"]
        cost += _COST["slot"]
        if cost > budget:
            raise UnsafeFileError(
                f"{path} has a manifest whose parse would take more than {MAX_PARSE_RATIO} "
                "times the file's size in memory; a file saved by skggda does not.")
