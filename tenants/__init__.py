"""Tenancy and the hierarchy: database engine, tenant-scoped sessions, RLS policies, models, principals, tokens.

Imports nothing else of Liaison Grid.
"""
