"""Builds the running parts (database, tokens, API config, Celery) from settings."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from deploy.settings import Settings
from schema.context import ApiConfig
from services import runtime as worker_runtime
from services.celery_app import configure
from tenants.db import Database
from tenants.tokens import TokenCodec


def token_codec(settings: Settings) -> TokenCodec:
    private_key = settings.jwt_private_key_file.read_text() if settings.jwt_private_key_file else None
    public_key = settings.jwt_public_key_file.read_text() if settings.jwt_public_key_file else None
    return TokenCodec(
        algorithm=settings.jwt_algorithm,
        secret=settings.resolved_jwt_secret(),
        private_key=private_key,
        public_key=public_key,
    )


def database(settings: Settings, *, pool_size: int | None = None) -> Database:
    """The app role's database for commands and tasks: they wait as long as their work takes."""
    return Database(
        settings.app_url, tenant_role=settings.tenant_role, pool_size=pool_size or settings.db_pool_size
    )


def api_database(settings: Settings) -> Database:
    """The app role's database for the API: bounded waits, which the API answers with 503."""
    return Database(
        settings.app_url,
        tenant_role=settings.tenant_role,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        statement_timeout=settings.statement_timeout,
        lock_timeout=settings.lock_timeout,
    )


def api_config(settings: Settings) -> ApiConfig:
    """Everything the API needs; refuses unsafe production settings (UnsafeSettings)."""
    settings.check_production()
    configure_celery(settings)
    return ApiConfig(
        database=api_database(settings),
        tokens=token_codec(settings),
        token_ttl=timedelta(seconds=settings.token_ttl_seconds),
        production=settings.production,
        introspection=settings.introspection_enabled,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        max_body_bytes=settings.max_body_bytes,
    )


def configure_celery(settings: Settings) -> Celery:
    return configure(settings.celery_broker_url)


def configure_worker(settings: Settings) -> Celery:
    """The worker's Celery app and database; refuses unsafe production settings (UnsafeSettings).

    Tasks keep the server's own limits (no statement or lock timeout): nobody waits on them, and a task that
    fails on a database error retries with back-off (services/tasks.py)."""
    settings.check_production()
    app = configure_celery(settings)
    worker_runtime.configure_database(database(settings, pool_size=2))
    return app
