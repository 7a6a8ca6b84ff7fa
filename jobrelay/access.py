"""Who may do what in an env: jobrelay's Firebase custom claims, changed by operators and audited.

jobrelay reads two custom claims from a user's ID token: `admin: true` (an operator) and
`roles: [...]` (env and job-type access). Operators grant and revoke them through the API
(`POST /v1/envs/{env}/access:grant|:revoke`, the CLI's `jobrelay access ...`); the API sets them with
firebase-admin in the env's own project and records every change in that env's Firestore
`access_log` (who, when, what was asked, the claims before and after). See ADR 0016.

Rules, all checked before anything is written:
- only operators (the admin claim, or an operator service account) may change or list access;
- a role must be one jobrelay knows (`known_roles`): a job type's `roles` or the env's `access.roles`;
  `jobrelay-*` roles are jobrelay's own (the scheduler's) and never granted to a person;
- the email must belong to a user of the env's project (they sign in to the app once first);
- other custom claims the app set are left as they are.

A user's ID token carries the claims it was issued with: new claims reach jobrelay when the app
refreshes the token (`user.getIdToken(true)`, or by itself within the hour).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobrelay.auth import Caller
from jobrelay.errors import NotFound, Unavailable, Unprocessable
from jobrelay.models import now
from jobrelay.registry import Registry
from jobrelay.settings import Environment

log = logging.getLogger("jobrelay.access")

ACCESS_LOG = "access_log"
RESERVED_ROLE_PREFIX = "jobrelay-"
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,62}\Z")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\Z")
MAX_CLAIMS_BYTES = 1000  # Firebase's limit on a user's custom claims, as JSON
USERS_PAGE = 1000  # firebase-admin's largest page of list_users
MAX_LOG_ENTRIES = 200


class AccessChange(BaseModel):
    """The body of a grant or revoke: whose access, and which claims."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254)
    admin: bool = False
    roles: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip()
        if not EMAIL.match(v):
            raise ValueError("not an email address")
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for role in v:
            if not ROLE.match(role):
                raise ValueError(f"{role!r} is not a role name (lower-case letters, digits, '-' and '_')")
        return sorted(set(v))

    @model_validator(mode="after")
    def _something(self) -> AccessChange:
        if not self.admin and not self.roles:
            raise ValueError('say what to change: "admin": true and/or "roles": [...]')
        return self


@dataclass(frozen=True)
class Grants:
    """jobrelay's part of a user's custom claims."""

    admin: bool = False
    roles: tuple[str, ...] = ()

    @classmethod
    def of(cls, claims: dict[str, Any] | None) -> Grants:
        claims = claims or {}
        roles = claims.get("roles")
        return cls(
            admin=claims.get("admin") is True,
            roles=tuple(sorted(str(r) for r in roles)) if isinstance(roles, list) else (),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"admin": self.admin, "roles": list(self.roles)}

    def claims(self, others: dict[str, Any]) -> dict[str, Any]:
        """The user's whole custom claims with these grants: other claims kept, empty ones dropped."""
        out = {k: v for k, v in others.items() if k not in ("admin", "roles")}
        if self.admin:
            out["admin"] = True
        if self.roles:
            out["roles"] = list(self.roles)
        return out


def known_roles(env: Environment, registry: Registry) -> list[str]:
    """The roles jobrelay gives meaning to in `env`: job types' `roles` and the env's `access.roles`."""
    roles = {r for jt in registry.types.values() for r in jt.roles} | set(env.access.roles)
    return sorted(r for r in roles if not r.startswith(RESERVED_ROLE_PREFIX))


@dataclass(frozen=True)
class Outcome:
    """What a grant or revoke did."""

    action: Literal["grant", "revoke"]
    uid: str
    email: str
    before: Grants
    after: Grants
    log_id: str | None  # None when nothing changed (and nothing was recorded)

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def body(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "uid": self.uid,
            "email": self.email,
            "changed": self.changed,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "log_id": self.log_id,
            "note": (
                "the user's new claims reach jobrelay when their ID token refreshes (getIdToken(true), "
                "or by itself within the hour)"
                if self.changed
                else "nothing to change"
            ),
        }


class AccessManager:
    """Grants, revokes and lists jobrelay's claims in one env's Firebase project."""

    def __init__(self, env: Environment, db: firestore.Client, registry: Registry) -> None:
        self.env = env
        self.db = db
        self.registry = registry
        self._app: Any = None
        self._lock = threading.Lock()

    def _firebase(self) -> Any:
        """firebase-admin's app of the env's project (pointed at FIREBASE_AUTH_EMULATOR_HOST locally)."""
        with self._lock:
            if self._app is None:
                import firebase_admin

                name = f"jobrelay-access-{self.env.name}"
                try:
                    self._app = firebase_admin.get_app(name)
                except ValueError:
                    # Application Default Credentials: the API's service account, which holds
                    # roles/firebaseauth.admin in its own project (terraform/modules/environment).
                    self._app = firebase_admin.initialize_app(options={"projectId": self.env.project}, name=name)
            return self._app

    # -- changes ---------------------------------------------------------------------------------

    def grant(self, by: Caller, change: AccessChange) -> Outcome:
        unknown = sorted(set(change.roles) - set(known_roles(self.env, self.registry)))
        if unknown:
            known = known_roles(self.env, self.registry)
            raise Unprocessable(
                f"unknown role {unknown[0]!r} in env {self.env.name}: jobrelay knows {', '.join(known) or 'none'} "
                "(a job type's roles or the env's access.roles in infra/environments.yaml)",
                [{"field": "roles", "problem": f"unknown role {r!r}"} for r in unknown],
            )
        return self._change(by, "grant", change)

    def revoke(self, by: Caller, change: AccessChange) -> Outcome:
        # Any role may be revoked, known or not: a role a job type no longer uses must still come off.
        return self._change(by, "revoke", change)

    def _change(self, by: Caller, action: Literal["grant", "revoke"], change: AccessChange) -> Outcome:
        user = self._user(change.email)
        others = dict(user.custom_claims or {})
        before = Grants.of(others)
        if action == "grant":
            after = Grants(admin=before.admin or change.admin, roles=tuple(sorted({*before.roles, *change.roles})))
        else:
            after = Grants(
                admin=before.admin and not change.admin,
                roles=tuple(r for r in before.roles if r not in change.roles),
            )
        if after == before:
            return Outcome(action, user.uid, change.email, before, after, None)
        claims = after.claims(others)
        if len(json.dumps(claims, separators=(",", ":"))) > MAX_CLAIMS_BYTES:
            raise Unprocessable(
                f"the user's custom claims would pass Firebase's {MAX_CLAIMS_BYTES}-byte limit",
                [{"field": "roles", "problem": "too many claims"}],
            )
        # Recorded before it is applied: a change never happens without its log entry.
        entry = self.db.collection(ACCESS_LOG).document()
        entry.set(
            {
                "at": now(),
                "env": self.env.name,
                "action": action,
                "by": {"uid": by.uid, "email": by.email, "kind": by.kind},
                "target": {"uid": user.uid, "email": change.email},
                "asked": {"admin": change.admin, "roles": change.roles},
                "before": before.as_dict(),
                "after": after.as_dict(),
                "status": "pending",
            }
        )
        from firebase_admin import auth

        try:
            auth.set_custom_user_claims(user.uid, claims or None, app=self._firebase())
        except Exception as exc:
            entry.update({"status": "failed", "error": f"{exc.__class__.__name__}: {exc}"[:500]})
            raise Unavailable(f"could not set the claims in Firebase Auth: {exc}") from exc
        entry.update({"status": "applied", "applied_at": now()})
        log.warning(
            "access %s by %s in %s: %s %s -> %s",
            action,
            by.uid,
            self.env.name,
            change.email,
            before.as_dict(),
            after.as_dict(),
        )
        return Outcome(action, user.uid, change.email, before, after, entry.id)

    def _user(self, email: str) -> Any:
        from firebase_admin import auth, exceptions

        try:
            return auth.get_user_by_email(email, app=self._firebase())
        except auth.UserNotFoundError as exc:
            raise NotFound(
                f"no user with email {email} in env {self.env.name} (Firebase project {self.env.project}): "
                "they must sign in to the app once before they can be given access",
                {"email": email},
            ) from exc
        except exceptions.FirebaseError as exc:
            raise Unavailable(f"cannot look the user up in Firebase Auth now: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------------

    def users(self, page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The users on one page of the project's users (1,000) who hold a jobrelay claim."""
        from firebase_admin import auth

        page = auth.list_users(page_token=page_token, max_results=USERS_PAGE, app=self._firebase())
        out = []
        for user in page.users:
            grants = Grants.of(user.custom_claims)
            if grants.admin or grants.roles:
                out.append({"uid": user.uid, "email": user.email, "disabled": user.disabled, **grants.as_dict()})
        return out, page.next_page_token or None

    def log(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` access changes (1 to MAX_LOG_ENTRIES), newest first."""
        if not 1 <= limit <= MAX_LOG_ENTRIES:
            raise Unprocessable(
                f"limit must be between 1 and {MAX_LOG_ENTRIES}", [{"field": "limit", "problem": "out of range"}]
            )
        query = self.db.collection(ACCESS_LOG).order_by("at", direction=firestore.Query.DESCENDING).limit(limit)
        return [_entry(snap.id, snap.to_dict() or {}) for snap in query.stream()]


def _entry(entry_id: str, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entry_id}
    for key, value in data.items():
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def parse_change(raw: Any) -> AccessChange:
    """The request body as an AccessChange, or Unprocessable naming the field."""
    from pydantic import ValidationError

    from jobrelay.validation import validation_details

    if not isinstance(raw, dict):
        raise Unprocessable(
            'the body must be a JSON object: {"email": ..., "admin": true} or {"email": ..., "roles": [...]}',
            [{"field": "body", "problem": "not an object"}],
        )
    try:
        return AccessChange.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc)
        raise Unprocessable(f"invalid access change: {details[0]['field']}: {details[0]['problem']}", details) from exc
