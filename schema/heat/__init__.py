"""Heat maps and request statistics over GraphQL."""
