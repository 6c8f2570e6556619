"""Tenancy and the hierarchy: engine, tenant-scoped sessions, RLS policies, models, principals, tokens.

Imports nothing else of Liaison Grid.
"""
