"""Pulselink: a realtime client (Socket.IO v4 or JSON envelopes over WebSocket) that loses
nothing.

    import pulselink

    async with pulselink.Client(url, auth=lambda: {"token": token}, store_path="outbox.db") as client:
        await client.subscribe("room:subscribe", {"roomId": "r1"}, unsubscribe="room:unsubscribe")
        await client.emit("session:feedback", {"rating": 5})
        reply = await client.emit_with_ack("quiz:answer_submit", {"answer": "A"}, timeout=5.0)
        async for ev in client.events():
            print(ev.namespace, ev.event, ev.args)

The Rust core keeps the connection (heartbeat, reconnect with backoff and jitter, connection
state recovery), persists every emit in a durable outbox until the server has it, replays
subscriptions and drops inbound duplicates. This package is its asyncio face; the generated
UniFFI layer is ``pulselink._ffi``.
"""

from ._auth import Auth, AuthObject
from ._client import Client, Hub, Outbox, Presence, Socket
from ._errors import (
    AckTimeout,
    ClientClosed,
    ConnectionFailed,
    Disconnected,
    Expired,
    InternalError,
    InvalidArgs,
    InvalidConfig,
    OutboxFull,
    ProxyError,
    PulselinkError,
    Rejected,
    Removed,
    StorageError,
    Unauthorized,
)
from ._events import Event, EventStream, HubNoticeStream, NoticeStream
from ._security import certificate_pins, generate_outbox_key, outbox_key
from ._ffi import (
    AppHeartbeat,
    AuthRequest,
    BackgroundFlush,
    BackgroundPolicy,
    Budget,
    DedupConfig,
    DisconnectReason,
    Durability,
    ErrorAction,
    HubNotice,
    HubStats,
    Interface,
    LowLaneHold,
    Metrics,
    NetworkPath,
    Notice,
    OutboxConfig,
    OutboxKey,
    OutboxStats,
    Overflow,
    PauseBackoff,
    PendingEmit,
    PresenceChange,
    Priority,
    ProxyConfig,
    RateLimit,
    ReconnectConfig,
    ServerSignals,
    State,
    StateTimes,
    StoreConfig,
    TlsConfig,
    Transports,
)

__all__ = [
    "AckTimeout",
    "AppHeartbeat",
    "Auth",
    "AuthObject",
    "AuthRequest",
    "BackgroundFlush",
    "BackgroundPolicy",
    "Budget",
    "Client",
    "ClientClosed",
    "ConnectionFailed",
    "DedupConfig",
    "DisconnectReason",
    "Disconnected",
    "Durability",
    "ErrorAction",
    "Event",
    "EventStream",
    "Expired",
    "Hub",
    "HubNotice",
    "HubNoticeStream",
    "HubStats",
    "Interface",
    "InternalError",
    "InvalidArgs",
    "InvalidConfig",
    "LowLaneHold",
    "Metrics",
    "NetworkPath",
    "Notice",
    "NoticeStream",
    "Outbox",
    "OutboxConfig",
    "OutboxFull",
    "OutboxKey",
    "OutboxStats",
    "Overflow",
    "PauseBackoff",
    "PendingEmit",
    "Presence",
    "PresenceChange",
    "Priority",
    "ProxyConfig",
    "ProxyError",
    "PulselinkError",
    "RateLimit",
    "ReconnectConfig",
    "Rejected",
    "Removed",
    "ServerSignals",
    "Socket",
    "State",
    "StateTimes",
    "StorageError",
    "StoreConfig",
    "TlsConfig",
    "Transports",
    "Unauthorized",
    "certificate_pins",
    "generate_outbox_key",
    "outbox_key",
]
