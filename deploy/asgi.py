"""The ASGI app, configured from the environment: `uvicorn deploy.asgi:app`."""

from __future__ import annotations

from deploy.runtime import api_config
from deploy.settings import load
from schema.app import create_app

app = create_app(api_config(load()))
