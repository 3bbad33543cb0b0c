"""Create, list, rotate, revoke and authenticate virtual keys."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ..errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from ..ledger.entry import utc_iso
from ..tags import ENVIRONMENT_HEADER, PROJECT_HEADER, USER_HEADER, CostTags, is_valid_tag
from .model import ApiKey, bind

KEY_PREFIX = "sk-fin-"
KEY_ID_PREFIX, KEY_ID_BYTES = "vk_", 6  # key ids: vk_ + 12 hex digits
KEY_ID = re.compile(rf"{KEY_ID_PREFIX}[0-9a-f]{{{2 * KEY_ID_BYTES}}}")
ANY = "*"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRecord(BaseModel, frozen=True):
    key_id: str
    name: str
    tier: str
    projects: tuple[str, ...]
    environments: tuple[str, ...]
    user_id: str | None = None
    status: str = "active"
    created_at: str
    revoked_at: str | None = None
    replaced_by: str | None = None

    def check_bindings(self, tags: CostTags) -> None:
        """403 if the tags fall outside what this key may spend on. Only tags that were missing or invalid (and
        booked to unallocated in observe mode) are not checked; the label sent as a value is checked like any."""
        problems = []
        if (PROJECT_HEADER not in tags.unallocated and ANY not in self.projects
                and tags.project_id not in self.projects):
            problems.append(PROJECT_HEADER)
        if (ENVIRONMENT_HEADER not in tags.unallocated and ANY not in self.environments
                and tags.environment not in self.environments):
            problems.append(ENVIRONMENT_HEADER)
        if USER_HEADER not in tags.unallocated and self.user_id is not None and tags.user_id != self.user_id:
            problems.append(USER_HEADER)
        if problems:
            raise Forbidden(
                f"This API key is not allowed to spend on these tags: {', '.join(problems)}.",
                code="key_binding_violation", param=", ".join(problems))


class KeySpec(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    tier: str
    projects: list[str] = Field(default_factory=lambda: [ANY], min_length=1)
    environments: list[str] = Field(default_factory=lambda: [ANY], min_length=1)
    user_id: str | None = None


def _record(item: ApiKey) -> KeyRecord:
    return KeyRecord(
        key_id=item.key_id, name=item.name, tier=item.tier, projects=tuple(item.projects),
        environments=tuple(item.environments), user_id=item.user_id, status=item.status,
        created_at=item.created_at, revoked_at=item.revoked_at, replaced_by=item.replaced_by)


class KeyService:
    def __init__(self, table_name: str, tiers: set[str], cache_ttl_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.model = bind(table_name)
        self.tiers = tiers
        self.cache_ttl = cache_ttl_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    # --- admin ----------------------------------------------------------------------------------------

    def _validate(self, spec: KeySpec) -> None:
        if spec.tier not in self.tiers:
            raise InvalidRequest(f"Unknown tier; expected one of: {', '.join(sorted(self.tiers))}.", param="tier")
        for field, values in (("projects", spec.projects), ("environments", spec.environments)):
            if any(v != ANY and not is_valid_tag(v) for v in values):
                raise InvalidRequest(f"{field} must be tag values (1-64 of A-Z a-z 0-9 . _ : -) or '*'.",
                                     param=field)
        if spec.user_id is not None and not is_valid_tag(spec.user_id):
            raise InvalidRequest("user_id must be a tag value.", param="user_id")

    def create(self, spec: KeySpec) -> tuple[str, KeyRecord]:
        """Returns the plaintext key (shown once) and its record."""
        self._validate(spec)
        key = new_key()
        item = self.model(
            key_hash=hash_key(key), key_id=KEY_ID_PREFIX + secrets.token_hex(KEY_ID_BYTES), name=spec.name,
            tier=spec.tier, projects=spec.projects, environments=spec.environments, user_id=spec.user_id,
            created_at=utc_iso(datetime.now(UTC)))
        item.save(condition=self.model.key_hash.does_not_exist())
        return key, _record(item)

    def _by_id(self, key_id: str) -> ApiKey:
        if not KEY_ID.fullmatch(key_id):  # never sent to DynamoDB (an index key over 2,048 bytes is an error there)
            raise NotFound("No key with this id.", code="key_not_found", param="key_id")
        for item in self.model.by_key_id.query(key_id):
            return self.model.get(item.key_hash, consistent_read=True)
        raise NotFound("No key with this id.", code="key_not_found", param="key_id")

    def get(self, key_id: str) -> KeyRecord:
        return _record(self._by_id(key_id))

    def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        records = [_record(item) for item in self.model.scan()]
        return sorted((r for r in records if include_revoked or r.status == "active"), key=lambda r: r.created_at)

    def revoke(self, key_id: str, replaced_by: str | None = None) -> KeyRecord:
        item = self._by_id(key_id)
        if item.status != "revoked":
            item.update(actions=[self.model.status.set("revoked"),
                                 self.model.revoked_at.set(utc_iso(datetime.now(UTC))),
                                 *([self.model.replaced_by.set(replaced_by)] if replaced_by else [])])
        self.forget()
        return _record(item)

    def rotate(self, key_id: str) -> tuple[str, KeyRecord]:
        """A new key with the same bindings; the old one is revoked."""
        old = self._by_id(key_id)
        if old.status == "revoked":
            raise InvalidRequest("A revoked key cannot be rotated.", param="key_id")
        key, record = self.create(KeySpec(name=old.name, tier=old.tier, projects=list(old.projects),
                                          environments=list(old.environments), user_id=old.user_id))
        self.revoke(key_id, replaced_by=record.key_id)
        return key, record

    # --- request path -----------------------------------------------------------------------------------

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def authenticate(self, authorization: str | None) -> KeyRecord:
        """The active key behind ``Authorization: Bearer <key>``; cached for ``cache_ttl`` seconds."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("Missing API key: send Authorization: Bearer <virtual key>.")
        key = authorization[len("Bearer "):].strip()
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            raise Unauthorized("Invalid API key.")
        digest = hash_key(key)
        now = self.clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or now - hit[0] > self.cache_ttl:
            try:
                record: KeyRecord | None = _record(self.model.get(digest))
            except self.model.DoesNotExist:
                record = None
            with self._lock:
                self._cache[digest] = (now, record)
        else:
            record = hit[1]
        if record is None or record.status != "active":
            raise Unauthorized("Invalid or revoked API key.")
        return record
