"""Ed25519 signatures for audit packs: the only module that uses ``cryptography``.

Keys are PEM files: the private key in PKCS#8 (unencrypted: protect it with file permissions; it is written
with mode 0600), the public key in SubjectPublicKeyInfo. A key's fingerprint is the SHA-256 of its raw 32 bytes,
in hex, for people to compare a pack's key with the one they trust.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firehose.errors import ConfigError, DataError


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The private key at ``path``, or a new one saved there (mode 0600); and whether it was made now."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--signing-key {path}: not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"--signing-key {path}: not an Ed25519 key")
        return key, False
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return key, True


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key_pem: bytes) -> str:
    raw = _public(public_key_pem, "the public key").public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The signature of ``data``, base64."""
    return base64.b64encode(key.sign(data)).decode()


def verify(public_key_pem: bytes, data: bytes, signature: str) -> bool:
    try:
        _public(public_key_pem, "the public key").verify(base64.b64decode(signature.strip()), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _public(pem: bytes, what: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise DataError(f"{what} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{what} is not an Ed25519 key")
    return key
