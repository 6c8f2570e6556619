"""The domain: one package per domain, plus the Celery app and the outbox. Imports geo and tenants."""
