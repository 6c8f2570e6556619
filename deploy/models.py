"""Every table the models declare, in one metadata (migrations drafts and the schema check use it)."""

from __future__ import annotations

import importlib

from tenants.models import Base

MODEL_MODULES = (
    "tenants.models",
    "geo.models",
    "services.audit.models",
    "services.outbox.models",
    "services.notifications.models",
    "services.workflow.models",
    "services.timers.models",
    "services.requests.models",
    "services.meetings.models",
    "deploy.beat",
    "services.deliberation.models",
    "services.mediation.models",
    "services.deputies.models",
    "services.matching.models",
    "services.rectifications.models",
)

for module in MODEL_MODULES:
    importlib.import_module(module)

metadata = Base.metadata
