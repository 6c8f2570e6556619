"""Running Liaison Grid: settings, the `liaison` CLI, local services, migrations, deployment files."""
