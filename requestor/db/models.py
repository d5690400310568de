"""The local state: typed SQLAlchemy 2 models. Alembic (``migrations/``) owns the schema."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from requestor.status import VMStatus

__all__ = [
    "VM",
    "Base",
    "LegacyRejectedVM",
    "Provider",
    "ProviderCapabilities",
    "UserKey",
    "VMGrant",
    "VMStatus",
    "utcnow",
]

# Named constraints keep batch migrations on SQLite reproducible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without an offset (SQLite has no time zones); reads back aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Provider(Base):
    """A provider as discovery last described it."""

    __tablename__ = "providers"

    provider_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(8))
    cpu: Mapped[int | None] = mapped_column(Integer)
    memory: Mapped[int | None] = mapped_column(Integer)
    storage: Mapped[int | None] = mapped_column(Integer)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProviderCapabilities(Base):
    """What the provider node at an address supports, as golem last detected it.

    Keyed by the address golem calls (not the advertised id: the identity check
    compares the two). Trusted for a short time only (``services/capabilities.py``).
    """

    __tablename__ = "provider_capabilities"

    ip_address: Mapped[str] = mapped_column(String(100), primary_key=True)
    # What /provider/info said; None: the node has no such route (legacy generation).
    reported_provider_id: Mapped[str | None] = mapped_column(String(256))
    async_create: Mapped[bool] = mapped_column(Boolean)
    # None: not known (legacy providers may or may not have the start route).
    can_start: Mapped[bool | None] = mapped_column(Boolean)
    payment_address: Mapped[str | None] = mapped_column(String(256))
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VM(Base):
    """A VM the user rented: the local name, where it lives and how to reach it."""

    __tablename__ = "vms"
    __table_args__ = (UniqueConstraint("provider_ip", "provider_vm_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Unknown for VMs adopted from the earlier requestor's database.
    provider_id: Mapped[str | None] = mapped_column(
        String(200), ForeignKey("providers.provider_id", ondelete="SET NULL"), index=True
    )
    provider_ip: Mapped[str] = mapped_column(String(100))
    # The provider keys VMs by this name across all requestors, so it is unique
    # per provider and never reused; the user's name stays local.
    provider_vm_name: Mapped[str] = mapped_column(String(64))
    cpu: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    storage: Mapped[int] = mapped_column(Integer)
    status: Mapped[VMStatus] = mapped_column(
        Enum(
            VMStatus,
            name="vm_status",
            native_enum=False,
            length=16,
            values_callable=lambda members: [m.value for m in members],
            validate_strings=True,
            create_constraint=True,
        ),
        default=VMStatus.CREATING,
    )
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    ssh_user: Mapped[str] = mapped_column(String(64), default="ubuntu")
    ssh_key_path: Mapped[str | None] = mapped_column(Text)
    # OpenSSH one-line public key the VM showed at its first connection (TOFU pin).
    host_key: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Who created it (Settings.user, Settings.host); NULL for VMs recorded before
    # golem kept owners.
    created_by_user: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by_host: Mapped[str | None] = mapped_column(String(255))
    # The last golem that acted on it (user@host), what it did and when.
    last_actor: Mapped[str | None] = mapped_column(String(320))
    last_action: Mapped[str | None] = mapped_column(String(16))
    last_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The OpenSSH public key the VM was created with: the one it trusts from the
    # start (other keys only by ``golem vm grant``). NULL when not recorded.
    ssh_public_key: Mapped[str | None] = mapped_column(Text)


class UserKey(Base):
    """A teammate's SSH public key, recorded by their golem in a shared database
    so that others can grant it access (``golem vm grant --user``)."""

    __tablename__ = "user_keys"

    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(100), primary_key=True)  # SHA256:...
    public_key: Mapped[str] = mapped_column(Text)  # one OpenSSH line, no comment
    host: Mapped[str | None] = mapped_column(String(255))  # where it was recorded from
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VMGrant(Base):
    """A public key added to a VM's authorized keys by ``golem vm grant``."""

    __tablename__ = "vm_grants"

    vm_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True
    )
    fingerprint: Mapped[str] = mapped_column(String(100), primary_key=True)
    public_key: Mapped[str] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(64))  # None: granted by --key
    granted_by: Mapped[str] = mapped_column(String(320))  # user@host
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LegacyRejectedVM(Base):
    """A row of the earlier requestor's ``vms`` table that could not be adopted.

    Kept verbatim so nothing is lost; ``golem vm list`` reports them.
    """

    __tablename__ = "legacy_rejected_vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(Text)
    provider_ip: Mapped[str | None] = mapped_column(Text)
    vm_id: Mapped[str | None] = mapped_column(Text)
    config: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
