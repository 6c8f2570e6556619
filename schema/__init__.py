"""The GraphQL API (strawberry) and the Starlette app: the only package that knows GraphQL or HTTP."""
