"""The per-app service objects, built once by create_app and reached through `services()`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.burnlist import BurnList, open_burnlist
from app.catalog import Catalog
from app.config import Settings
from app.link_ledger import LinkLedger
from app.metrics import Metrics
from app.throttle import LoginThrottle, throttle_url_for
from app.tokens import TokenService
from app.users import Authenticator, CredentialStore, UserDirectory
from storage_backends import Storage, open_storage

EXTENSION_KEY = "pkgdl"


@dataclass(frozen=True)
class Services:
    """Everything a request needs; each object opens its connections lazily, inside the worker that uses it."""

    settings: Settings
    storage: Storage
    catalog: Catalog
    authenticator: Authenticator
    tokens: TokenService
    burnlist: BurnList
    links: LinkLedger
    throttle: LoginThrottle
    metrics: Metrics


def build_services(settings: Settings, storage: Storage | None = None) -> Services:
    """Wire the services from settings (no I/O here: gunicorn may fork after this)."""
    storage = storage or open_storage(settings.storage_url, settings.storage_options)
    burnlist_url = settings.burnlist_url
    burnlist = open_burnlist(burnlist_url)
    return Services(
        settings=settings,
        storage=storage,
        catalog=Catalog(storage, settings.catalog_ttl),
        authenticator=Authenticator(credential_store(settings)),
        tokens=TokenService(settings.secret_keys, settings.token_max_age),
        burnlist=burnlist,
        links=LinkLedger(burnlist, settings.resume_window),
        throttle=LoginThrottle(throttle_url_for(burnlist_url), settings.login_attempts_per_minute),
        metrics=Metrics(),
    )


def credential_store(settings: Settings) -> CredentialStore:
    """The users file, or the directory with PKGDL_AUTH_BACKEND=ldap."""
    if settings.ldap is not None:
        from app.ldap_directory import LdapDirectory

        return LdapDirectory(settings.ldap)
    return UserDirectory(settings.users_file)


def services() -> Services:
    """The current app's services."""
    return current_app.extensions[EXTENSION_KEY]
