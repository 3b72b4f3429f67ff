package io.pulselink.ktx

import io.pulselink.AppHeartbeat
import io.pulselink.AuthRequest
import io.pulselink.DisconnectReason
import io.pulselink.ServerSignals
import io.pulselink.ClientConfig
import io.pulselink.Hub
import io.pulselink.Interface
import io.pulselink.NetworkPath
import io.pulselink.WireProtocol
import io.pulselink.Notice
import io.pulselink.OutboxKey
import io.pulselink.ProxyConfig
import io.pulselink.PulselinkException
import io.pulselink.ReconnectConfig
import io.pulselink.State
import io.pulselink.StoreConfig
import io.pulselink.TlsConfig
import io.pulselink.Transports
import io.pulselink.certificatePins
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.buildJsonObject
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.put
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Path
import java.util.Collections
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.seconds

/** Child JVMs started by the clean-exit test (each must exit 0 with no output). */
private const val EXIT_RUNS = 50

/** The Kotlin wrapper against the official Node Socket.IO server (tests/node/server.js). */
class PulselinkClientTest {
    @TempDir
    lateinit var dir: Path

    private val servers = mutableListOf<NodeServer>()

    private fun server(script: String = "server.js", env: Map<String, String> = emptyMap()) =
        NodeServer(dir.resolve("ledger.txt").toFile(), script, env).also { servers += it }

    @AfterEach
    fun stopServers() = servers.forEach { it.kill() }

    private fun test(body: suspend kotlinx.coroutines.CoroutineScope.() -> Unit) =
        runBlocking { withTimeout(180.seconds) { body() } }

    @Test
    fun `clients of a hub keep their own identities`() = test {
        val server = server()
        val hub = Hub()
        val devices = (0 until 10).map { i ->
            PulselinkClient(ClientConfig(url = server.url, authJson = "{\"token\":\"dev-$i\"}"), hub = hub)
        }
        devices.forEach { it.connect() }
        val keys = devices.mapIndexed { i, d ->
            val reply = d.emitWithAck("echo", mapOf("d" to i), timeout = 5.seconds)
            assertEquals(i, reply.args[0].jsonObject["d"]!!.jsonPrimitive.content.toInt())
            reply.args[0].jsonObject["idempotencyKey"]!!.jsonPrimitive.content.substringBeforeLast('-')
        }
        // One idempotency-key prefix per device: each has its own store and identity.
        assertEquals(10, keys.toSet().size)
        // Every client's notices on one flow, each naming its client.
        assertEquals((0uL until 10uL).toList(), devices.map { it.hubIndex })
        val refusal = async(start = CoroutineStart.UNDISPATCHED) {
            hub.noticeFlow().first { it.notice is Notice.ConnectError }
        }
        val refused = PulselinkClient(ClientConfig(url = server.url, authJson = "{\"token\":\"bad\"}"), hub = hub)
        refused.start()
        assertEquals(refused.hubIndex, refusal.await().client)
        refused.shutdown()
        devices.forEach { it.shutdown() }
    }

    @Test
    fun `connects with a refreshed token, exchanges events and acks, then closes`() = test {
        val server = server()
        val asked = Collections.synchronizedList(mutableListOf<AuthRequest>())
        val client = PulselinkClient(ClientConfig(url = server.url)) { request ->
            asked += request
            buildJsonObject { put("token", if (request.refresh) "fresh" else "stale") }
        }
        // Collection starts (and registers) before connect, so the welcome is not missed.
        val welcome = async(start = CoroutineStart.UNDISPATCHED) { client.events("welcome").first() }
        client.connect()
        assertEquals(State.Connected, client.state.value)
        assertEquals(listOf(false, true), asked.map { it.refresh })
        assertEquals("fresh", welcome.await().args[0].jsonObject["auth"]!!.jsonObject["token"]!!.jsonPrimitive.content)

        val reply = client.emitWithAck("quiz:answer_submit", "A", timeout = 5.seconds)
        assertEquals("A", reply.args[0].jsonObject["answer"]!!.jsonPrimitive.content)

        // Binary arguments travel as attachments.
        val echo = async(start = CoroutineStart.UNDISPATCHED) { client.events("echo").first() }
        val blob = ByteArray(300) { it.toByte() }
        client.emit("echo", mapOf("n" to 1), blob)
        val back = echo.await()
        assertArrayEquals(blob, back.args[1].attachment(back.attachments))

        // The server asks for an ack; the answer reaches it.
        val got = async(start = CoroutineStart.UNDISPATCHED) { client.events("server:got_ack").first() }
        val question = async(start = CoroutineStart.UNDISPATCHED) { client.events("server:question").first() }
        client.emit("ask", "ready?")
        question.await().also { assertTrue(it.wantsAck) }.ack("yes", 42)
        assertEquals(listOf(JsonPrimitive("yes"), JsonPrimitive(42)), got.await().args.toList())

        val all = async(start = CoroutineStart.UNDISPATCHED) { client.events().toList() }
        client.shutdown()
        assertEquals(State.Closed, client.state.value)
        assertEquals(emptyList<InboundEvent>(), all.await(), "closing completes every flow")
    }

    @Test
    fun `refused credentials end in Unauthorized`() = test {
        val server = server()
        val client = PulselinkClient(ClientConfig(url = server.url)) { buildJsonObject { put("token", "bad") } }
        val e = assertThrows<PulselinkException.Unauthorized> { runBlocking { client.connect() } }
        assertTrue(e.message!!.contains("Authentication failed"), e.message)
        assertTrue(client.state.value is State.Unauthorized)
        client.shutdown()
    }

    @Test
    fun `reconnects, replays the subscription, then sends what was queued in order`() = test {
        val server = server()
        val config = ClientConfig(
            url = server.url,
            store = StoreConfig(path = dir.resolve("outbox.db").toString()),
            reconnect = ReconnectConfig(initialDelayMs = 50u, maxDelayMs = 250u),
        )
        val client = PulselinkClient(config)
        client.connect()
        client.subscribe("room:subscribe", mapOf("roomId" to "r1"), unsubscribe = "room:unsubscribe")
        client.emitWithAck("log?") // answered after the subscription: the server has it
        server.kill()
        client.state.first { it is State.Reconnecting }
        for (n in 0 until 3) client.emit("tick", mapOf("n" to n), confirm = true)
        server.restart()
        client.state.first { it == State.Connected }
        client.outbox.drained()
        val lines = server.ledger()
        assertEquals(listOf("room:r1 0", "room:r1 0"), lines.take(2), lines.toString())
        assertEquals(listOf("0", "1", "2"), lines.drop(2).map { it.split(" ")[1] })
        client.shutdown()
    }

    @Test
    fun `the outbox outlives the client that queued it`() = test {
        val server = server()
        val store = dir.resolve("outbox.db").toString()
        PulselinkClient(ClientConfig(url = "http://127.0.0.1:9", store = StoreConfig(path = store))).use { offline ->
            runBlocking { for (n in 0 until 5) offline.emit("tick", mapOf("n" to n), confirm = true) }
        }
        val client = PulselinkClient(ClientConfig(url = server.url, store = StoreConfig(path = store)))
        assertEquals(5uL, client.outbox.stats().pending)
        client.connect()
        client.outbox.drained()
        assertEquals(listOf("0", "1", "2", "3", "4"), server.ledger().map { it.split(" ")[1] })
        client.shutdown()
    }

    @Test
    fun `many coroutines on many threads share one client`() = test {
        val server = server()
        val client = PulselinkClient(ClientConfig(url = server.url))
        client.connect()
        val answers = (0 until 16).map { i ->
            async(Dispatchers.Default) {
                (0 until 20).map { j -> client.emitWithAck("quiz:answer_submit", "$i-$j").args[0].jsonObject["answer"]!!.jsonPrimitive.content }
            }
        }.awaitAll().flatten()
        assertEquals((0 until 16).flatMap { i -> (0 until 20).map { j -> "$i-$j" } }, answers)

        // A flow collected on another dispatcher sees events in order.
        val ticks = async(Dispatchers.Default, start = CoroutineStart.UNDISPATCHED) {
            client.events("tick:back").take(100).toList().map { it.args[0].jsonPrimitive.int }
        }
        launch { for (n in 0 until 100) client.emit("emit-to-me", mapOf("event" to "tick:back", "args" to listOf(n))) }
        assertEquals((0 until 100).toList(), ticks.await())
        client.shutdown()
    }

    @Test
    fun `speaks the JSON-envelope protocol with the same API`() = test {
        val server = server("envelope-server.js")
        val config = ClientConfig(
            url = server.wsUrl,
            protocol = WireProtocol.Envelope(pingIntervalMs = null, pingTimeoutMs = null),
        )
        val client = PulselinkClient(config) { buildJsonObject { put("token", "kt"); put("userId", "u7") } }
        client.connect()
        client.subscribe("subscribe", mapOf("eventTypes" to listOf("scores:updated")))
        val scores = async(start = CoroutineStart.UNDISPATCHED) { client.events("scores:updated").first() }
        val reply = client.emitWithAck("publish", mapOf("type" to "scores:updated", "data" to mapOf("home" to 3)))
        assertEquals(1, reply.args[0].jsonObject["delivered"]!!.jsonPrimitive.int)
        assertEquals(3, scores.await().args[0].jsonObject["home"]!!.jsonPrimitive.int)
        assertThrows<PulselinkException.Rejected> { runBlocking { client.emitWithAck("reject-me", mapOf("a" to 1)) } }
        client.shutdown()
    }

    /** Runs the JDK's keytool (a self-signed certificate needs nothing else) and returns its output. */
    private fun keytool(vararg args: String): String {
        val p = ProcessBuilder(File(System.getProperty("java.home"), "bin/keytool").path, *args)
            .redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor() == 0) { "keytool ${args.first()}: $out" }
        return out
    }

    @Test
    fun `wss to a self-signed server trusted by its own certificate and pinned`() = test {
        val p12 = dir.resolve("server.p12").toFile().path
        val store = arrayOf("-keystore", p12, "-storetype", "PKCS12", "-storepass", "pulselink", "-alias", "server")
        keytool("-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=pulselink-test",
            "-ext", "san=ip:127.0.0.1", "-validity", "2", *store)
        val pem = keytool("-exportcert", "-rfc", *store)
        val server = server(env = mapOf("TLS_PFX" to p12, "TLS_PASSPHRASE" to "pulselink"))
        assertTrue(server.url.startsWith("https://"))

        // Trusted as the only anchor and pinned: WebSocket and polling both work.
        val tls = TlsConfig(caPem = listOf(pem), builtinRoots = false, pins = certificatePins(pem))
        for ((transports, name) in listOf(Transports.WEB_SOCKET to "websocket", Transports.POLLING to "polling")) {
            val client = PulselinkClient(ClientConfig(url = server.url, tls = tls, transports = transports))
            client.connect()
            assertEquals(JsonPrimitive(name), client.emitWithAck("transport?").args[0])
            client.shutdown()
        }

        // The default trust refuses it, and the connect error says why.
        val refused = PulselinkClient(ClientConfig(url = server.url, connectWaitMs = 2000u))
        val failed = async(start = CoroutineStart.UNDISPATCHED) {
            refused.notices().first { it is Notice.ConnectFailed } as Notice.ConnectFailed
        }
        refused.start()
        assertTrue("UnknownIssuer" in failed.await().error, failed.await().error)
        refused.shutdown()

        assertThrows<PulselinkException.InvalidConfig> {
            PulselinkClient(ClientConfig(url = server.url, tls = TlsConfig(builtinRoots = false)))
        }
        assertThrows<PulselinkException.InvalidArgs> { certificatePins("not a certificate") }
    }

    @Test
    fun `default settings fall back to long-polling where WebSocket is refused`() = test {
        val server = server(env = mapOf("TRANSPORTS" to "polling"))
        val client = PulselinkClient(ClientConfig(url = server.url))
        val welcome = async(start = CoroutineStart.UNDISPATCHED) { client.events("welcome").first() }
        client.connect()
        welcome.await()
        assertEquals(JsonPrimitive("polling"), client.emitWithAck("transport?").args[0])
        client.shutdown()
    }

    @Test
    fun `presence follows a member who drops and returns`() = test {
        val server = server()
        suspend fun member(user: String): Pair<PulselinkClient, io.pulselink.Presence> {
            val client = PulselinkClient(
                ClientConfig(url = server.url, authJson = "{\"userId\":\"$user\"}", reconnect = ReconnectConfig(initialDelayMs = 50u)),
            )
            client.subscribe("room:subscribe", buildJsonObject { put("roomId", "r1") }, unsubscribe = "room:unsubscribe")
            val presence = client.presence(io.pulselink.PresenceConfig(room = "r1"))
            client.connect()
            return client to presence
        }
        suspend fun io.pulselink.Presence.shows(vararg want: String) {
            val changes = presenceChanges(this)
            if (users() != want.toList()) changes.first { users() == want.toList() }
        }
        val (ann, annView) = member("ann")
        val (bob, bobView) = member("bob")
        annView.shows("ann", "bob")
        bob.setNetworkAvailable(false)
        annView.shows("ann")
        bob.setNetworkAvailable(true)
        annView.shows("ann", "bob")
        bobView.shows("ann", "bob")
        annView.cancel()
        bobView.cancel()
        ann.shutdown()
        bob.shutdown()
    }

    @Test
    fun `the seed preset's app heartbeat reconnects when the pong stops`() = test {
        val server = server()
        val signals = ServerSignals(
            seedPreset = true,
            heartbeat = AppHeartbeat(event = "ping", reply = "pong", intervalMs = 300u, timeoutMs = 200u),
        )
        val client = PulselinkClient(
            ClientConfig(url = server.url, signals = signals, reconnect = ReconnectConfig(initialDelayMs = 50u)),
        )
        val pong = async(start = CoroutineStart.UNDISPATCHED) { client.events("pong").first() }
        client.connect()
        pong.await()
        val dropped = async(start = CoroutineStart.UNDISPATCHED) {
            client.notices().first { it is Notice.Disconnected } as Notice.Disconnected
        }
        client.emitWithAck("mute-pong")
        assertEquals(DisconnectReason.AppPingTimeout, dropped.await().reason)
        client.state.first { it is State.Connected }
        client.shutdown()
    }

    @Test
    fun `goes through an HTTP proxy, and a refusal is typed and keeps the password out`() = test {
        val server = server()
        val proxy = Tinyproxy(dir.resolve("tinyproxy").toFile())
        try {
            val client = PulselinkClient(ClientConfig(url = server.url, proxy = ProxyConfig(url = proxy.url())))
            client.connect()
            assertEquals(JsonPrimitive("websocket"), client.emitWithAck("transport?").args[0])
            client.shutdown()
            assertTrue(proxy.carried(server.port) > 0, "the session did not go through the proxy")

            val wrong = "Wr0ng-kt-pa55"
            val refused = PulselinkClient(
                ClientConfig(
                    url = server.url,
                    proxy = ProxyConfig(url = proxy.url(password = null), username = proxy.user, password = wrong),
                    reconnect = ReconnectConfig(enabled = false),
                    transports = Transports.WEB_SOCKET,
                ),
            )
            val e = assertThrows<PulselinkException.Proxy> { refused.connect() }
            assertTrue("refused the credentials" in e.message!! && wrong !in e.message!!, e.message)
            refused.shutdown()
        } finally {
            proxy.kill()
        }
    }

    @Test
    fun `an encrypted outbox is unreadable on disk and needs its key`() = test {
        val store = dir.resolve("enc.db").toFile().path
        fun config(key: OutboxKey?) =
            ClientConfig(url = "http://127.0.0.1:9", store = StoreConfig(path = store, encryptionKey = key))
        val key = OutboxKey.generate()
        val client = PulselinkClient(config(key))
        client.emit("tick", mapOf("note" to "private-reading"), confirm = true)
        client.shutdown()
        val files = dir.toFile().listFiles()!!.filter { it.name.startsWith("enc.db") }
        assertTrue(files.isNotEmpty())
        assertTrue(files.none { String(it.readBytes(), Charsets.ISO_8859_1).contains("private-reading") })

        assertThrows<PulselinkException.InvalidConfig> { PulselinkClient(config(null)) }
        assertThrows<PulselinkException.InvalidConfig> { PulselinkClient(config(OutboxKey.generate())) }
        assertThrows<PulselinkException.InvalidConfig> { OutboxKey.parse("too short") }
        val again = PulselinkClient(config(OutboxKey.parse(key.toBase64())))
        val pending = again.outbox.list(10u)
        assertEquals(1, pending.size)
        assertTrue("private-reading" in pending[0].argsJson)
        again.shutdown()
    }

    @Test
    fun `a JVM that used a client exits cleanly, every time`() = test {
        val server = server()
        val seed = dir.resolve("backlog.db").toString()
        PulselinkClient(ClientConfig(url = "http://127.0.0.1:9", store = StoreConfig(path = seed))).use { offline ->
            runBlocking { for (n in 0 until 1000) offline.emit("echo", mapOf("n" to n)) }
        }
        val java = File(System.getProperty("java.home"), "bin/java").path
        val store = dir.resolve("o.db").toFile()
        repeat(EXIT_RUNS) { run ->
            File(seed).copyTo(store, overwrite = true)
            val child = ProcessBuilder(
                java, "-cp", System.getProperty("java.class.path"),
                "-Djna.library.path=" + System.getProperty("jna.library.path"),
                "io.pulselink.ktx.ExitScenarioKt", server.url, store.path,
            ).redirectErrorStream(true).start()
            val output = child.inputStream.bufferedReader().readText()
            val code = child.waitFor()
            assertEquals(0 to "", code to output, "run ${run + 1} of $EXIT_RUNS")
        }
    }

    @Test
    fun `bad input is a clear exception`() = test {
        assertThrows<PulselinkException.InvalidConfig> { PulselinkClient(ClientConfig(url = "not a url")) }
        val client = PulselinkClient(ClientConfig(url = "http://127.0.0.1:9"))
        assertThrows<IllegalArgumentException> { runBlocking { client.emit("x", Any()) } }
        assertThrows<PulselinkException.AckTimeout> {
            runBlocking { client.emitWithAck("x", 1, timeout = 50.milliseconds) }
        }
        client.shutdown()
    }
    @Test
    fun `goes to the background after a flush, stores emits there, and comes back`() = test {
        val server = server()
        val client = PulselinkClient(ClientConfig(url = server.url, reconnect = ReconnectConfig(initialDelayMs = 50u, maxDelayMs = 250u)))
        client.connect()
        client.networkChanged(NetworkPath(available = true, `interface` = Interface.CELLULAR, expensive = true, constrained = false))
        repeat(20) { client.emit("tick", buildJsonObject { put("n", it) }) }
        val flush = client.enterBackground(2.seconds)
        assertEquals(0uL, flush.remaining)
        client.state.first { it is State.Background }
        client.emit("tick", buildJsonObject { put("n", 20) })
        assertEquals(1uL, client.outbox.stats().pending)
        // Time in the background is what the metric measures: spend a known amount there.
        val stay = 50.milliseconds
        delay(stay)
        client.enterForeground()
        client.state.first { it is State.Connected }
        client.outbox.drained()
        val metrics = client.metrics()
        assertTrue(metrics.radioWakeups >= 1uL && metrics.stateTimes.backgroundMs >= stay.inWholeMilliseconds.toULong(), metrics.toString())
        client.shutdown()
        assertThrows<PulselinkException.Closed> { client.enterForeground() }
    }
}

/** `tests/node/<script>` on loopback; [kill] and [restart] keep the port. */
class NodeServer(
    private val ledgerFile: File,
    private val script: String = "server.js",
    private val env: Map<String, String> = emptyMap(),
) {
    private val root = File(System.getProperty("pulselink.root") ?: "../..")
    private var process: Process? = null
    var port = 0
        private set
    val url get() = (if ("TLS_PFX" in env) "https" else "http") + "://127.0.0.1:$port"

    /** The envelope server's WebSocket URL. */
    val wsUrl get() = "ws://127.0.0.1:$port/ws"

    init {
        restart()
    }

    fun restart() {
        val pb = ProcessBuilder("node", File(root, "tests/node/$script").path)
        pb.environment()["PORT"] = port.toString()
        pb.environment()["LEDGER"] = ledgerFile.path
        pb.environment().putAll(env)
        pb.redirectError(ProcessBuilder.Redirect.INHERIT)
        val p = pb.start()
        val line = p.inputStream.bufferedReader().readLine() ?: error("server did not start")
        check(line.startsWith("listening ")) { "server said: $line" }
        port = line.split(" ")[1].toInt()
        process = p
    }

    fun kill() {
        process?.destroyForcibly()?.waitFor()
        process = null
    }

    fun ledger(): List<String> = if (ledgerFile.exists()) ledgerFile.readLines().filter { it.isNotEmpty() } else emptyList()

}

/** tinyproxy (Debian package, installed by scripts/test.sh) on a free loopback port, asking for [user]/[password]. */
class Tinyproxy(private val dir: File) {
    val user = "ann"
    val password = "kt-pr0xy-s3cret"
    val port = java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
    private val log = File(dir, "proxy.log")
    private val process: Process

    init {
        dir.mkdirs()
        val conf = File(dir, "proxy.conf")
        conf.writeText(
            "Port $port\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 600\nLogLevel Connect\n" +
                "LogFile \"${log.path}\"\nDisableViaHeader Yes\nBasicAuth $user $password\n",
        )
        process = ProcessBuilder("tinyproxy", "-d", "-c", conf.path).redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD).start()
        val deadline = System.nanoTime() + 10_000_000_000
        while (true) {
            try {
                java.net.Socket("127.0.0.1", port).close()
                break
            } catch (e: java.io.IOException) {
                check(System.nanoTime() < deadline && process.isAlive) { "tinyproxy did not listen" }
                Thread.sleep(10)
            }
        }
    }

    /** The proxy URL, with credentials unless [password] is null. */
    fun url(password: String? = this.password) =
        if (password == null) "http://127.0.0.1:$port" else "http://$user:$password@127.0.0.1:$port"

    /** Requests it carried to 127.0.0.1:[serverPort], from its log. */
    fun carried(serverPort: Int) = if (!log.exists()) 0 else
        log.readLines().count { "Request (file descriptor" in it && "127.0.0.1:$serverPort" in it }

    fun kill() {
        process.destroyForcibly().waitFor()
    }
}
