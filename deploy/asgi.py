"""The ASGI app, configured from the environment: `uvicorn deploy.asgi:app`."""

from __future__ import annotations

import gc

from deploy.runtime import api_config
from deploy.settings import load
from schema.app import create_app

app = create_app(api_config(load()))
# Everything built at start-up lives as long as the process: keep it out of every full collection.
gc.freeze()
