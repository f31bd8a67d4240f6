"""The file: a ZIP archive of ``manifest.json`` and ``tensors.safetensors``.

Reading checks, in this order, before anything is built: that the file is
a complete archive with exactly those two uncompressed entries, that the
manifest is JSON in this format and version, and that the SHA-256 digest it
records matches the tree and the tensor bytes (a truncated or edited file
fails here).
"""

from __future__ import annotations

import hashlib
import json
import zipfile

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
FORMAT = "skggda"
VERSION = 1


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:  # an optional dependency
        raise ImportError(
            "skggda.io needs the safetensors package: pip install 'skggda[io]'."
        ) from exc
    return safetensors.torch


def canonical_json(node) -> bytes:
    """The one JSON text of ``node`` that the digest covers."""
    return json.dumps(node, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(root, payload: bytes) -> str:
    """SHA-256 of the tree's canonical JSON, a newline, and the tensor bytes."""
    sha = hashlib.sha256(canonical_json(root))
    sha.update(b"\n")
    sha.update(payload)
    return sha.hexdigest()


def write(path, root, tensors, skggda_version):
    """Write the tree ``root`` and the ``{name: tensor}`` dict to ``path``."""
    payload = _safetensors().save(tensors)
    manifest = {"format": FORMAT, "version": VERSION, "skggda_version": skggda_version,
                "sha256": digest(root, payload), "root": root}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, canonical_json(manifest))
        archive.writestr(TENSORS, payload)


def read(path):
    """``(root, payload)`` of a verified file; ``ValueError`` for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_entries(archive, path)
            manifest, payload = archive.read(MANIFEST), archive.read(TENSORS)
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{path} is not a complete skggda file (truncated?): {exc}") from exc
    try:
        manifest = json.loads(manifest)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path} has an unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a skggda file.")
    if manifest.get("version") != VERSION:
        raise ValueError(f"{path} has format version {manifest.get('version')!r}; this "
                         f"skggda reads version {VERSION}.")
    if manifest.get("sha256") != digest(manifest.get("root"), payload):
        raise ValueError(f"{path} has been altered or is corrupt: its SHA-256 digest does "
                         "not match its content. Nothing was loaded.")
    return manifest["root"], payload


def load_tensors(payload, path):
    """The ``{name: tensor}`` dict of a verified payload."""
    try:
        return _safetensors().load(payload)
    except Exception as exc:  # safetensors' own error type is not public
        raise ValueError(f"{path} has unreadable tensors: {exc}") from None


def _check_entries(archive, path):
    infos = archive.infolist()
    if sorted(info.filename for info in infos) != sorted([MANIFEST, TENSORS]):
        raise ValueError(f"{path} is not a skggda file: it holds "
                         f"{[info.filename for info in infos][:5]}.")
    if any(info.compress_type != zipfile.ZIP_STORED for info in infos):
        raise ValueError(f"{path} is not a skggda file: its entries are compressed.")
