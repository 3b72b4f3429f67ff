package io.pulselink.ktx

import io.pulselink.AuthProvider
import io.pulselink.AuthRequest
import io.pulselink.BackgroundFlush
import io.pulselink.Client
import io.pulselink.ClientConfig
import io.pulselink.EmitOptions
import io.pulselink.EventReceiver
import io.pulselink.Hub
import io.pulselink.HubNotice
import io.pulselink.Metrics
import io.pulselink.NetworkPath
import io.pulselink.Notice
import io.pulselink.Outbox
import io.pulselink.Presence
import io.pulselink.PresenceChange
import io.pulselink.PresenceConfig
import io.pulselink.Priority
import io.pulselink.Socket
import io.pulselink.State
import io.pulselink.shutdownRuntime
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonObject
import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds

/** One inbound event, arguments parsed. */
class InboundEvent internal constructor(
    /** Namespace it arrived on, e.g. `/`. */
    val namespace: String,
    /** Event name, e.g. `metric:recorded`. */
    val name: String,
    /** Arguments; binary ones are placeholders: resolve them with [JsonElement.attachment]. */
    val args: JsonArray,
    /** Binary attachments, in placeholder order. */
    val attachments: List<ByteArray>,
    /** The event's unique id when the protocol carries one (recovery offset or envelope id). */
    val id: String?,
    private val responder: io.pulselink.AckResponder?,
) {
    /** True when the server waits for an acknowledgement: answer with [ack]. */
    val wantsAck: Boolean get() = responder != null

    /** Answers the server's acknowledgement request ([ByteArray]s travel as binary attachments). */
    fun ack(vararg args: Any?) {
        val responder = checkNotNull(responder) { "event '$name' did not ask for an acknowledgement" }
        val a = encodeArgs(args)
        responder.send(a.json, a.attachments)
    }

    override fun toString() = "InboundEvent(namespace=$namespace, name=$name, args=$args, id=$id)"

    internal companion object {
        fun of(e: io.pulselink.Event) = InboundEvent(e.namespace, e.name, decodeArgs(e.argsJson), e.attachments, e.id, e.ack)
    }
}

/** The answer to [PulselinkSocket.emitWithAck]. */
data class AckResult(
    /** The answer's arguments. */
    val args: JsonArray,
    /** Binary attachments of the answer. */
    val attachments: List<ByteArray>,
)

/** Events pulled from `receiver` a batch at a time; the receiver is closed with the flow. */
internal fun eventFlow(open: () -> EventReceiver): Flow<InboundEvent> = flow {
    val receiver = open()
    try {
        while (true) {
            val batch = receiver.nextBatch(BATCH)
            if (batch.isEmpty()) break
            for (e in batch) emit(InboundEvent.of(e))
        }
    } finally {
        receiver.cancel()
        receiver.destroy()
    }
}

private const val BATCH = 256u

/** One namespace on a client's connection. Arguments follow [PulselinkClient]'s rules. */
open class PulselinkSocket internal constructor(internal val socket: Socket) {
    /** The namespace, e.g. `/rooms/r1`. */
    val namespace: String get() = socket.namespace()

    /**
     * Queues `event` in the durable outbox and returns its entry id: once this returns the
     * emit survives a crash or an app kill and is delivered in order when connected (or it
     * was delivered already: written to a healthy connection before it needed storing).
     */
    suspend fun emit(
        event: String,
        vararg args: Any?,
        priority: Priority? = null,
        ttl: Duration? = null,
        coalesceKey: String? = null,
        confirm: Boolean = false,
    ): ULong {
        val a = encodeArgs(args)
        val options = EmitOptions(priority, ttl?.inWholeMilliseconds?.toULong(), coalesceKey, confirm)
        return socket.emitWith(event, a.json, options, a.attachments)
    }

    /**
     * Emits durably and returns the server's acknowledgement; throws
     * `PulselinkException.AckTimeout` after `timeout` (the emit stays queued).
     */
    suspend fun emitWithAck(event: String, vararg args: Any?, timeout: Duration = 10.seconds): AckResult {
        val a = encodeArgs(args)
        val reply = socket.emitWithAck(event, a.json, timeout.inWholeMilliseconds.toULong(), a.attachments)
        return AckResult(decodeArgs(reply.argsJson), reply.attachments)
    }

    /** Sends only if connected now; `false` when dropped. */
    fun emitVolatile(event: String, vararg args: Any?): Boolean {
        val a = encodeArgs(args)
        return socket.emitVolatile(event, a.json, a.attachments)
    }

    /**
     * Declares a subscription, sent and acknowledged on every (re)connect before queued emits
     * flow and kept across restarts; `unsubscribe` names the event that undoes it.
     * Subscriptions carry JSON only: a [ByteArray] throws `PulselinkException.InvalidArgs`.
     */
    suspend fun subscribe(event: String, vararg args: Any?, unsubscribe: String? = null) {
        val a = encodeArgs(args)
        socket.subscribe(event, a.json, unsubscribe, a.attachments)
    }

    /** Forgets a subscription and sends its `unsubscribe` counterpart. */
    suspend fun unsubscribe(event: String, vararg args: Any?) {
        val a = encodeArgs(args)
        socket.unsubscribe(event, a.json, a.attachments)
    }

    /** Events named `event` on this namespace, from the moment the flow is collected. */
    fun events(event: String): Flow<InboundEvent> = eventFlow { socket.eventsNamed(event) }

    /** Leaves the namespace and stops rejoining it. */
    fun leave() = socket.leave()

    /**
     * Who is online in `config.room`, kept current from the server's presence events and
     * re-fetched after every (re)connect: [Presence.users] now, [presenceChanges] as they
     * come. `cancel()` it when done.
     */
    fun presence(config: PresenceConfig): Presence = socket.presence(config)
}

/**
 * The changes of `presence` since it was made (up to 256 buffered), until it is cancelled or
 * its client closed. One collector at a time: two would split the changes.
 */
fun presenceChanges(presence: Presence): Flow<PresenceChange> = flow {
    while (true) emit(presence.nextChange() ?: break)
}

/**
 * A connection to a Socket.IO v4 server that loses nothing: durable outbox, reconnect with
 * backoff, subscriptions replayed, duplicates dropped.
 *
 * Emit arguments are [kotlinx.serialization.json.JsonElement]s, strings, numbers, booleans,
 * `null`, maps and lists of those, and [ByteArray]s (sent as binary attachments).
 *
 * `auth` is asked on every connect, and again with `request.refresh = true` after the
 * server refused the token or said it expired. It is a suspending function run in a
 * coroutine (a token refresh over HTTP suspends; no thread is blocked for it).
 */
class PulselinkClient private constructor(
    /** The generated client, for what this wrapper does not cover. */
    val client: Client,
) : PulselinkSocket(client.mainSocket()), AutoCloseable {
    private companion object {
        init {
            // Stop the core's threads before the JVM stops: one of them completing a call (a
            // JNA callback into a coroutine) must not enter a VM that is going away.
            Runtime.getRuntime().addShutdownHook(Thread { shutdownRuntime(2000u) })
        }
    }

    /**
     * Creates a client from `config`; nothing connects until [connect] or [start]. With `hub`
     * (a gateway holding many device identities) its store runs on the hub's one thread,
     * shared with the hub's other clients; `config.store.path` must differ between them.
     */
    constructor(
        config: ClientConfig,
        hub: Hub? = null,
        auth: (suspend (AuthRequest) -> JsonObject?)? = null,
    ) : this(
        auth?.let(::provider).let { p -> hub?.client(config, p) ?: Client(config, p) },
    )

    private val stateFlow = MutableStateFlow(client.state())

    /** Pulls state changes from the core; cancelled by [shutdown]. */
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.Default)

    init {
        scope.launch {
            var state = client.state()
            while (state !is State.Closed) {
                state = client.nextState(state)
                refreshState()
            }
        }
    }

    private fun refreshState() {
        // Read now rather than the value a pull returned: the flow never moves back to a
        // stale state when `connect()` refreshed it first.
        stateFlow.value = client.state()
    }

    /** The connection state, as it changes. */
    val state: StateFlow<State> = stateFlow.asStateFlow()

    /**
     * Connects and returns once the main namespace is joined; throws
     * `PulselinkException.Unauthorized` when the credentials are refused (also after a fresh
     * token) or `PulselinkException.Connection` if not connected within `connectWaitMs`.
     */
    suspend fun connect() {
        try {
            client.connect()
        } finally {
            refreshState()
        }
    }

    /** Starts connecting in the background and returns at once. */
    fun start() = client.start()

    /** Disconnects and stops retrying until [connect]; queued emits stay queued. */
    fun disconnect() = client.disconnect()

    /** Closes for good: sends what the connection can still take, completes every flow. */
    suspend fun shutdown() {
        client.shutdown()
        scope.cancel()
        refreshState()
    }

    /** Blocking [shutdown], for `use { }`. */
    override fun close() = runBlocking { shutdown() }

    /** Reachability hint: `false` stops retrying (state `Offline`), `true` reconnects now. */
    fun setNetworkAvailable(available: Boolean) = client.setNetworkAvailable(available)

    /**
     * The app is going to the background: flushes the outbox for up to [deadline], then
     * applies the configured `background` policy (`Disconnect` by default: the link closes
     * and nothing is attempted until [enterForeground]; emits are still stored). Returns how
     * many entries were sent and how many stay stored. On Android, `followApp` in the AAR
     * calls this from the process lifecycle.
     */
    suspend fun enterBackground(deadline: Duration = 10.seconds): BackgroundFlush =
        client.enterBackground(deadline.inWholeMilliseconds.toULong()).also { refreshState() }

    /** Back in the foreground: connects at once when a connection is wanted. */
    fun enterForeground() = client.enterForeground()

    /**
     * The network path changed: unavailable stops attempts, another interface replaces the
     * link at once, an expensive or constrained path may hold `Priority.LOW` emits.
     */
    fun networkChanged(path: NetworkPath) = client.networkChanged(path)

    /** The socket of `namespace`, joined now and on every reconnect. */
    fun socket(namespace: String) = PulselinkSocket(client.socket(namespace))

    /** Every inbound event on every namespace, from the moment the flow is collected. */
    fun events(): Flow<InboundEvent> = eventFlow { client.events() }

    /** The number its [Hub] gave it, which [HubNotice.client] names; null without a hub. */
    val hubIndex: ULong? get() = client.hubIndex()

    /** Lifecycle notices, from the moment the flow is collected. */
    fun notices(): Flow<Notice> = pulled({ client.notices() }) { nextBatch(64u) }

    /** The durable outbox. */
    val outbox: Outbox get() = client.outbox()

    /** Counters, outbox size and latency figures now. */
    suspend fun metrics(): Metrics = client.metrics()

}

/**
 * Every notice of this hub's clients, from the moment the flow is collected, each naming its
 * client ([PulselinkClient.hubIndex]): a fleet is watched with one collector, not one each.
 */
fun Hub.noticeFlow(): Flow<HubNotice> = pulled({ notices() }) { nextBatch(64u) }

/**
 * What a pull receiver returns, batch by batch, until an empty batch (its source closed): the
 * receiver is opened when the flow is collected and let go when the collection ends.
 */
private fun <R : AutoCloseable, T> pulled(open: () -> R, nextBatch: suspend R.() -> List<T>): Flow<T> =
    flow {
        open().use { receiver ->
            while (true) {
                val batch = receiver.nextBatch()
                if (batch.isEmpty()) break
                batch.forEach { emit(it) }
            }
        }
    }

/** Presents a suspending Kotlin function as the core's (async) auth provider. */
private fun provider(auth: suspend (AuthRequest) -> JsonObject?) = object : AuthProvider {
    override suspend fun auth(request: AuthRequest): String? = auth(request)?.toString()
}
