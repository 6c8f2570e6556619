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
# The passwords the README gives for the two login roles: fine on a laptop, refused in production.
DEFAULT_OWNER_PASSWORD = "liaison_owner"
DEFAULT_APP_PASSWORD = "liaison_app"
# An HS256 secret shorter than the hash (RFC 7518, section 3.2) is not a real secret.
MIN_JWT_SECRET_LENGTH = 32


class UnsafeSettings(RuntimeError):
    """Production settings the app refuses to start with; the message is one sentence."""


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
    owner_password: str = Field(DEFAULT_OWNER_PASSWORD, alias="LIAISON_OWNER_PASSWORD")
    app_role: str = Field("liaison_app", alias="LIAISON_APP_ROLE")
    app_password: str = Field(DEFAULT_APP_PASSWORD, alias="LIAISON_APP_PASSWORD")
    # No login: the app role switches to it for transactions whose one scope is the whole city.
    tenant_role: str = Field("liaison_tenant", alias="LIAISON_TENANT_ROLE")
    # Per API process: up to twice this many connections (the pool and as many again as overflow).
    db_pool_size: int = Field(10, alias="LIAISON_DB_POOL_SIZE", ge=1, le=500)
    # Bounds on waiting in the API, in seconds (0: no limit); when one fires the API answers 503.
    db_pool_timeout: float = Field(2.0, alias="LIAISON_DB_POOL_TIMEOUT", ge=0, le=3600)
    statement_timeout: float = Field(10.0, alias="LIAISON_STATEMENT_TIMEOUT", ge=0, le=86400)
    lock_timeout: float = Field(2.0, alias="LIAISON_LOCK_TIMEOUT", ge=0, le=86400)

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
    max_body_bytes: int = Field(1024 * 1024, alias="LIAISON_MAX_BODY_BYTES", gt=0)
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

    def production_refusal(self) -> str | None:
        """Why production must not start with these settings (one sentence), or None."""
        if not self.production:
            return None
        if self.owner_password in ("", DEFAULT_OWNER_PASSWORD):
            return (
                "LIAISON_PRODUCTION is true but LIAISON_OWNER_PASSWORD is unset or the README's default, "
                "and the owner role reads every tenant: set a password of its own."
            )
        # APP_DATABASE_URL may authenticate without a password in the URL (a .pgpass file, certificates).
        app_password = make_url(self.app_url).password
        if app_password == DEFAULT_APP_PASSWORD or (not self.app_database_url and not app_password):
            return (
                "LIAISON_PRODUCTION is true but the app role's password (LIAISON_APP_PASSWORD, or the one in "
                "APP_DATABASE_URL) is unset or the README's default: set a password of its own."
            )
        if self.jwt_algorithm == "HS256" and len(self.jwt_secret or "") < MIN_JWT_SECRET_LENGTH:
            return (
                "LIAISON_PRODUCTION is true but LIAISON_JWT_SECRET is unset or shorter than "
                f"{MIN_JWT_SECRET_LENGTH} characters: set a long random secret (or use RS256 keys)."
            )
        if self.jwt_algorithm == "RS256" and (
            self.jwt_public_key_file is None or not self.jwt_public_key_file.is_file()
        ):
            return (
                "LIAISON_PRODUCTION is true and LIAISON_JWT_ALGORITHM is RS256 but "
                "LIAISON_JWT_PUBLIC_KEY_FILE names no readable file."
            )
        return None

    def check_production(self) -> None:
        """Raise UnsafeSettings when production must not start with these settings."""
        refusal = self.production_refusal()
        if refusal is not None:
            raise UnsafeSettings(refusal)


def load() -> Settings:
    return Settings()
