"""The receipt's codes and the client's idempotency key: made here, stored only as SHA-256.

- The check code opens a request's public progress (and is Open311's `token`); the rating code lets an
  anonymous submitter rate. Twelve characters of an alphabet without look-alikes (about 59 bits), printed
  as ABCD-EFGH-JKMN; typed with or without the hyphens, in either case.
- A submission under an idempotency key gets codes derived from the key and the submission, so a retry
  answers the same receipt although only the hashes are kept: whoever can replay the key gets them anyway.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{16,100}$")
CHECK, RATING = "check", "rating"


def normalize(code: str) -> str:
    # The same as migration 0012's SQL: separators dropped, upper case.
    return code.replace("-", "").replace(" ", "").upper()


def digest(code: str) -> str:
    return hashlib.sha256(normalize(code).encode()).hexdigest()


def _shown(raw: str) -> str:
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def new_code() -> str:
    return _shown("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def derived_code(seed: str, purpose: str) -> str:
    number = int.from_bytes(hashlib.sha256(f"{purpose}\n{seed}".encode()).digest(), "big")
    chars = []
    for _ in range(LENGTH):
        number, index = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[index])
    return _shown("".join(chars))


def rating_principal(request_id: int) -> str:
    """Who the holder of a request's rating code acts as, once the code has been checked."""
    return f"ratingcode:{request_id}"


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's idempotency key, bound to who sent it (a principal, an api key, or anyone anonymous)."""

    key: str
    sender: str

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(f"{self.sender}\n{self.key}".encode()).hexdigest()

    def codes(self, tenant_id: int, fingerprint: str) -> tuple[str, str]:
        seed = f"{tenant_id}\n{self.sender}\n{self.key}\n{fingerprint}"
        return derived_code(seed, CHECK), derived_code(seed, RATING)


def valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.fullmatch(key))


def fingerprint(fields: dict[str, object]) -> str:
    """What was submitted, so a key reused for something else is told apart from a retry."""
    return hashlib.sha256(
        json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
