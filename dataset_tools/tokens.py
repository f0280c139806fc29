"""Item and user tokens that are safe as RecBole tokens and as image file names.

A token is written unchanged when it matches ``[A-Za-z0-9_-][A-Za-z0-9_.-]*`` (at most 200
characters) and is not one of the strings pandas reads as missing (``NA``, ``null``, ``None`` ...).
Any other token (``../../etc/passwd``, ``a/b``, ``a b``, a NUL, a leading ``.``) is either refused
(``--unsafe-tokens error``) or percent-encoded (the default): ``%`` followed by the UTF-8 bytes
of the token, each byte outside ``[A-Za-z0-9_-]`` written as ``%XX``. Safe tokens never contain
``%`` and every encoded token starts with it, so the mapping is injective: no two source tokens
share a file name. An encoding longer than 200 characters is replaced by ``%~`` + the SHA-256 of
the token (``~`` never appears unencoded, so these cannot meet a percent-encoded token). The image of item ``t`` is ``NAME.images/<t>.jpg``, always inside that folder.
"""

from __future__ import annotations

import hashlib
import re

from recbole_pmmrec.errors import PMMRecDataError

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")
_KEEP_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Strings pandas.read_csv turns into NaN by default (they would vanish as RecBole tokens).
PANDAS_NA = frozenset(
    ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
)
MAX_TOKEN_LENGTH = 200


def is_safe_token(token: str) -> bool:
    return SAFE_TOKEN.fullmatch(token) is not None and token not in PANDAS_NA


def encode_token(token: str) -> str:
    """``%`` + percent-encoded UTF-8 bytes; injective and disjoint from safe tokens."""
    return "%" + "".join(chr(b) if b in _KEEP_BYTES else f"%{b:02X}" for b in token.encode("utf-8", "surrogatepass"))


class TokenMapper:
    """Maps source tokens to written tokens; remembers which ones it had to rename.

    ``mode`` is ``"encode"`` (rename unsafe tokens) or ``"error"`` (refuse them).
    """

    def __init__(self, kind: str, mode: str = "encode"):
        if mode not in ("encode", "error"):
            raise ValueError(f"unknown unsafe-token mode {mode!r}")
        self.kind = kind
        self.mode = mode
        self.renamed: dict[str, str] = {}

    def __call__(self, token: str) -> str:
        if is_safe_token(token):
            return token
        if token in self.renamed:
            return self.renamed[token]
        if self.mode == "error":
            raise PMMRecDataError(
                f"{self.kind} token {token!r} cannot be used as a file name (allowed: "
                f"[A-Za-z0-9_.-], not starting with '.', at most {MAX_TOKEN_LENGTH} characters, not a "
                f"pandas missing-value string). Fix the source, or pass --unsafe-tokens encode to "
                f"percent-encode such tokens (the mapping is recorded in NAME.meta.json)."
            )
        written = encode_token(token)
        if len(written) > MAX_TOKEN_LENGTH:  # too long for a file name: a digest instead
            written = "%~" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        self.renamed[token] = written
        return written
