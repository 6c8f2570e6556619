"""The hash-chained audit log: every state change appends a link holding the hash of the previous one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.models import GENESIS_HASH, AuditEntry, AuditHead


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def link_hash(entry: AuditEntry) -> str:
    """The hash of a link: its own fields and the previous link's hash, canonically encoded."""
    body = canonical_json(
        [
            entry.tenant_id,
            entry.seq,
            entry.at.astimezone(UTC).isoformat(),
            entry.actor,
            entry.action,
            entry.subject,
            entry.scope,
            entry.payload,
            entry.prev_hash,
        ]
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def append(
    session: AsyncSession,
    *,
    tenant_id: int,
    actor: str,
    action: str,
    subject: str,
    scope: str,
    payload: dict[str, Any],
) -> AuditEntry:
    """Append one link. The database hands out its number and the previous link's hash
    (`liaison_audit_next`, which locks the tenant's head row until the commit, so a tenant's appends queue
    there and the chain has no gaps or forks) and stores it (`liaison_audit_write`): the app role may not
    write the log or its head itself."""
    payload = json.loads(canonical_json(payload))
    seq, prev_hash = (await session.execute(text("SELECT seq, prev_hash FROM liaison_audit_next()"))).one()
    entry = AuditEntry(
        tenant_id=tenant_id,
        seq=int(seq),
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        subject=subject,
        scope=scope,
        payload=payload,
        prev_hash=str(prev_hash),
    )
    entry.hash = link_hash(entry)
    await session.execute(
        text(
            "SELECT liaison_audit_write(:tenant_id, :seq, :at, :actor, :action, :subject, "
            "CAST(:scope AS ltree), CAST(:payload AS jsonb), :hash)"
        ),
        {
            "tenant_id": tenant_id,
            "seq": entry.seq,
            "at": entry.at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "scope": scope,
            "payload": canonical_json(payload),
            "hash": entry.hash,
        },
    )
    return entry


@dataclass(frozen=True, slots=True)
class VerifyReport:
    tenant_id: int
    checked: int
    first_broken_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


async def _entries(session: AsyncSession, tenant_id: int, batch: int) -> AsyncIterator[AuditEntry]:
    """The tenant's links in order, a batch at a time (keyset pages, so a long chain never sits in memory)."""
    after = 0
    while True:
        page = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.tenant_id == tenant_id, AuditEntry.seq > after)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
        ).all()
        for entry in page:
            yield entry
        if len(page) < batch:
            return
        after = page[-1].seq
        session.expunge_all()


async def verify(session: AsyncSession, tenant_id: int, *, batch: int = 1000) -> VerifyReport:
    """Walk the chain in order and report the first link that was edited, removed or moved."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    async for entry in _entries(session, tenant_id, batch):
        if entry.seq != expected_seq:
            return VerifyReport(tenant_id, checked, expected_seq, f"link {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            return VerifyReport(tenant_id, checked, entry.seq, "it does not point at the link before it")
        recomputed = link_hash(entry)
        if recomputed != entry.hash:
            return VerifyReport(tenant_id, checked, entry.seq, "its contents do not match its hash")
        checked += 1
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    head = await session.scalar(select(AuditHead).where(AuditHead.tenant_id == tenant_id))
    if head is not None and (head.last_seq != expected_seq - 1 or head.last_hash != prev_hash):
        return VerifyReport(tenant_id, checked, expected_seq, f"the chain should end at link {head.last_seq}")
    return VerifyReport(tenant_id, checked, None, None)
