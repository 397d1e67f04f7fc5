"""Who is asking: passwords (argon2id), opaque session tokens, login rate limits.

* A password is kept only as an argon2id hash; hashing runs in a worker thread so the event loop
  keeps serving while a login is checked.
* A token is 32 random bytes (URL-safe text) shown once to the person; MongoDB keeps only its
  SHA-256, with the person, the role and the expiry. Logging out deletes it; a supervisor can
  delete every session of a person. A missing, unknown or expired token answers 401.
* Failed logins are throttled per account and client address with growing delays
  (:mod:`switchboard.gateway.throttle`), counted in MongoDB so every gateway replica sees the
  same counts: 429 with ``Retry-After``, before any password is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchboard.gateway.errors import ApiError
from switchboard.gateway.store import GatewayStore
from switchboard.gateway.throttle import LoginThrottle

log = structlog.get_logger("switchboard.gateway.auth")

Role = Literal["agent", "supervisor"]
PERSON_ID = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


@dataclass(frozen=True)
class Principal:
    """The authenticated person behind a request."""

    person_id: str
    role: Role
    name: str
    token_hash: str
    expires_at: datetime

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


class PersonSeed(BaseModel):
    """One person of the users file (``SB_GATEWAY_USERS_FILE``)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=PERSON_ID)
    name: str = ""
    role: Role = "agent"
    password: str = Field(min_length=1)
    teams: list[str] = Field(default_factory=list)


class UsersFile(BaseModel):
    people: list[PersonSeed]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


class Authenticator:
    def __init__(
        self,
        store: GatewayStore,
        *,
        token_ttl: timedelta,
        window: timedelta,
        account_limit: int,
        address_limit: int,
        first_delay: timedelta = timedelta(seconds=30),
        max_delay: timedelta = timedelta(minutes=15),
        account_hard_limit: int = 100,
        time_cost: int,
        memory_kib: int,
        parallelism: int,
    ) -> None:
        self._store = store
        self._ttl = token_ttl
        self._throttle = LoginThrottle(
            store,
            window=window,
            free_failures=account_limit,
            address_limit=address_limit,
            first_delay=first_delay,
            max_delay=max_delay,
            account_hard_limit=account_hard_limit,
        )
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash: str | None = None

    # -- passwords -------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    # -- login / logout --------------------------------------------------------------------

    async def log_in(self, login: str, password: str, address: str) -> tuple[str, Principal]:
        """Check the password; a new token (shown once) and who it belongs to."""
        now = _now()
        await self._throttle.check(login, address, now)
        person = await self._store.person(login)
        if person is None or not person.get("active", True):
            # Same work as a real check, so timing does not tell who exists.
            await self._verify(await self._dummy(), password)
            await self._throttle.failed(login, address, now)
            raise self._bad_login()
        if not await self._verify(str(person.get("password_hash", "")), password):
            log.info("login refused: wrong password", login=login, address=address)
            await self._throttle.failed(login, address, now)
            raise self._bad_login()
        if self._hasher.check_needs_rehash(str(person["password_hash"])):
            await self._store.set_password_hash(login, await self.hash_password(password))
        await self._throttle.succeeded(login, address)
        token = secrets.token_urlsafe(32)
        principal = Principal(
            person_id=login,
            role=person.get("role", "agent"),
            name=str(person.get("name", "")),
            token_hash=token_hash(token),
            expires_at=now + self._ttl,
        )
        await self._store.add_session(
            {
                "_id": principal.token_hash,
                "person_id": principal.person_id,
                "role": principal.role,
                "name": principal.name,
                "created_at": now,
                "expires_at": principal.expires_at,
                "address": address,
            }
        )
        log.info("logged in", person_id=login, role=principal.role)
        return token, principal

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.token_hex(16))
        return self._dummy_hash

    @staticmethod
    def _bad_login() -> ApiError:
        return ApiError(401, "bad_credentials", "unknown login or wrong password", field="password")

    async def authenticate(self, token: str | None) -> Principal:
        """The person a bearer token belongs to, or 401."""
        if not token:
            raise ApiError(
                401,
                "not_authenticated",
                "log in first: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        session = await self._store.session(token_hash(token))
        if session is None:
            raise ApiError(
                401,
                "invalid_token",
                "this token is unknown or was revoked; log in again",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        expires_at: datetime = session["expires_at"]
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at <= _now():
            await self._store.revoke_session(session["_id"])
            raise ApiError(
                401,
                "token_expired",
                "this token has expired; log in again",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Principal(
            person_id=session["person_id"],
            role=session["role"],
            name=session.get("name", ""),
            token_hash=session["_id"],
            expires_at=expires_at,
        )

    async def still_valid(self, principal: Principal) -> bool:
        session = await self._store.session(principal.token_hash)
        if session is None:
            return False
        expires_at: datetime = session["expires_at"]
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        return expires_at > _now()

    async def log_out(self, principal: Principal) -> None:
        await self._store.revoke_session(principal.token_hash)

    async def list_people(self) -> list[dict[str, Any]]:
        return await self._store.list_people()

    async def revoke_person(self, person_id: str) -> int:
        return await self._store.revoke_sessions_of(person_id)

    # -- people ----------------------------------------------------------------------------

    async def put_person(
        self,
        person_id: str,
        *,
        name: str,
        role: Role,
        password: str | None,
        active: bool,
        teams: list[str],
    ) -> bool:
        """Create or change a person; True when created."""
        existing = await self._store.person(person_id)
        if existing is None and password is None:
            raise ApiError(422, "invalid", "a new person needs a password", field="password")
        fields: dict[str, Any] = {"name": name, "role": role, "active": active, "teams": teams}
        if password is not None:
            fields["password_hash"] = await self.hash_password(password)
        await self._store.upsert_person(person_id, fields)
        if not active or (existing is not None and existing.get("role") != role):
            await self._store.revoke_sessions_of(person_id)
        return existing is None

    async def seed(self, users_file: Path | None) -> list[PersonSeed]:
        """Load the users file into an empty people collection; the people seeded."""
        if users_file is None or await self._store.count_people() > 0:
            return []
        try:
            text = await asyncio.to_thread(users_file.read_text, encoding="utf-8")
            data = UsersFile.model_validate(json.loads(text))
        except (OSError, ValueError, ValidationError) as exc:
            log.error("users file not loaded", path=str(users_file), error=str(exc))
            return []
        seeded = []
        for person in data.people:
            created = await self._store.insert_person(
                {
                    "_id": person.id,
                    "name": person.name or person.id,
                    "role": person.role,
                    "active": True,
                    "teams": person.teams,
                    "password_hash": await self.hash_password(person.password),
                }
            )
            if created:
                seeded.append(person)
        return seeded

    async def purge(self) -> None:
        """Delete expired sessions and old attempt windows (a periodic hook).

        The delete runs as its own task, awaited through ``shield``: a stop that cancels the
        periodic hook then always ends it. (Cancelled inside a PyMongo call, the cancellation can
        come out as another exception, which the runtime's periodic loop logs and then sleeps a
        whole period, holding the shutdown that waits for it.)
        """
        work = asyncio.ensure_future(self._store.purge(_now()))
        work.add_done_callback(_consume_outcome)
        await asyncio.shield(work)


def _consume_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("purge failed", error=repr(task.exception()))
