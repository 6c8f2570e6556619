"""Configuration from the environment (and `.local/services.env`, written by `make services`)."""

from __future__ import annotations

import re
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = REPO_ROOT / ".local"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:55432/liaison"
DEFAULT_BROKER_URL = "redis://127.0.0.1:56379/0"
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=LOCAL_DIR / "services.env", extra="ignore", populate_by_name=True
    )

    # A role allowed to create extensions and roles (the private cluster's superuser by default):
    # migrations run with it, then create tables as the owner role.
    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    # Where the app connects; derived from DATABASE_URL with the app role when unset.
    app_database_url: str | None = Field(None, alias="APP_DATABASE_URL")
    owner_role: str = Field("liaison_owner", alias="LIAISON_OWNER_ROLE")
    owner_password: str = Field("liaison_owner", alias="LIAISON_OWNER_PASSWORD")
    app_role: str = Field("liaison_app", alias="LIAISON_APP_ROLE")
    app_password: str = Field("liaison_app", alias="LIAISON_APP_PASSWORD")
    # No login: the app role switches to it for transactions whose one scope is the whole city.
    tenant_role: str = Field("liaison_tenant", alias="LIAISON_TENANT_ROLE")
    db_pool_size: int = Field(10, alias="LIAISON_DB_POOL_SIZE")

    celery_broker_url: str = Field(DEFAULT_BROKER_URL, alias="CELERY_BROKER_URL")

    jwt_algorithm: str = Field("HS256", alias="LIAISON_JWT_ALGORITHM")
    jwt_secret: str | None = Field(None, alias="LIAISON_JWT_SECRET")
    jwt_private_key_file: Path | None = Field(None, alias="LIAISON_JWT_PRIVATE_KEY_FILE")
    jwt_public_key_file: Path | None = Field(None, alias="LIAISON_JWT_PUBLIC_KEY_FILE")
    token_ttl_seconds: int = Field(8 * 3600, alias="LIAISON_TOKEN_TTL")

    production: bool = Field(False, alias="LIAISON_PRODUCTION")
    introspection: bool | None = Field(None, alias="LIAISON_INTROSPECTION")
    max_query_depth: int = Field(15, alias="LIAISON_MAX_QUERY_DEPTH")
    max_aliases: int = Field(30, alias="LIAISON_MAX_ALIASES")
    max_tokens: int = Field(5000, alias="LIAISON_MAX_TOKENS")
    host: str = Field("127.0.0.1", alias="LIAISON_HOST")
    port: int = Field(8000, alias="LIAISON_PORT")

    @field_validator("owner_role", "app_role", "tenant_role")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        # Role names are written into DDL (roles cannot be bind parameters).
        if not ROLE_NAME.fullmatch(value):
            raise ValueError(
                "a role name is 1 to 63 lowercase letters, digits or '_', starting with a letter"
            )
        return value

    @cached_property
    def app_url(self) -> str:
        if self.app_database_url:
            return self.app_database_url
        url = make_url(self.database_url).set(username=self.app_role, password=self.app_password)
        return url.render_as_string(hide_password=False)

    @cached_property
    def owner_url(self) -> str:
        url = make_url(self.database_url).set(username=self.owner_role, password=self.owner_password)
        return url.render_as_string(hide_password=False)

    def resolved_jwt_secret(self) -> str | None:
        """The HS256 secret; outside production a random one is kept in .local/jwt-secret."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.production or self.jwt_algorithm != "HS256":
            return None
        path = LOCAL_DIR / "jwt-secret"
        if not path.exists():
            LOCAL_DIR.mkdir(exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def introspection_enabled(self) -> bool:
        return (not self.production) if self.introspection is None else self.introspection


def load() -> Settings:
    return Settings()
