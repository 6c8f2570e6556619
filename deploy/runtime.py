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


def database(settings: Settings) -> Database:
    return Database(settings.app_url, tenant_role=settings.tenant_role, pool_size=settings.db_pool_size)


def api_config(settings: Settings) -> ApiConfig:
    configure_celery(settings)
    return ApiConfig(
        database=database(settings),
        tokens=token_codec(settings),
        token_ttl=timedelta(seconds=settings.token_ttl_seconds),
        production=settings.production,
        introspection=settings.introspection_enabled,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
    )


def configure_celery(settings: Settings) -> Celery:
    return configure(settings.celery_broker_url)


def configure_worker(settings: Settings) -> Celery:
    app = configure_celery(settings)
    worker_runtime.configure_database(
        Database(settings.app_url, tenant_role=settings.tenant_role, pool_size=2)
    )
    return app
