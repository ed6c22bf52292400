"""Deployment: the nginx template and its renderer, the local stack (`make stack`), process helpers."""
