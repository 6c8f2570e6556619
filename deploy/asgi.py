"""The ASGI app, configured from the environment: `uvicorn deploy.asgi:app`.

Unsafe production settings (the README's default passwords, no real JWT secret) stop the import with one
sentence on stderr and exit code 2, so the server never starts listening."""

from __future__ import annotations

import gc
import sys

from deploy.runtime import api_config
from deploy.settings import UnsafeSettings, load
from schema.app import create_app

try:
    config = api_config(load())
except UnsafeSettings as refused:
    print(f"liaison: {refused}", file=sys.stderr)
    raise SystemExit(2) from None
app = create_app(config)
# Everything built at start-up lives as long as the process: keep it out of every full collection.
gc.freeze()
