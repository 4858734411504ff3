"""SHA-256 of files: the completeness rule of every derivative, the weights' identity and the
training cache's fingerprint all use this one digest."""
import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
