package io.pulselink.ktx

import io.pulselink.ClientConfig
import io.pulselink.PulselinkException
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import java.io.File
import java.util.Base64

/**
 * The shared argument contract (`tests/fixtures/args.json`), run against the Kotlin wrapper;
 * the Rust, Python and Swift suites run the same file.
 */
class ArgsContractTest {
    private val fixture: JsonObject = Json.parseToJsonElement(
        File(File(System.getProperty("pulselink.root") ?: "../.."), "tests/fixtures/args.json").readText(),
    ).jsonObject

    private fun bytes(b64: JsonElement) = Base64.getDecoder().decode(b64.jsonPrimitive.content)

    /** The fixture's arguments as Kotlin values: `{"$bytes": b64}` becomes a [ByteArray]. */
    private fun native(value: JsonElement): Any? = when {
        value is JsonObject && value.keys == setOf("\$bytes") -> bytes(value["\$bytes"]!!)
        value is JsonObject -> value.mapValues { native(it.value) }
        value is JsonArray -> value.map { native(it) }
        else -> value
    }

    @Test
    fun `arguments encode as the fixture says and the core takes them`() = runBlocking {
        val client = PulselinkClient(ClientConfig(url = "http://127.0.0.1:9"))
        for (case in fixture["encode"]!!.jsonArray.map { it.jsonObject }) {
            val name = case["name"]!!.jsonPrimitive.content
            val args = case["args"]!!.jsonArray.map { native(it) }.toTypedArray()
            val encoded = encodeArgs(args)
            assertEquals(case["json"], Json.parseToJsonElement(encoded.json), name)
            val want = case["attachments"]!!.jsonArray.map { bytes(it) }
            assertEquals(want.size, encoded.attachments.size, name)
            want.zip(encoded.attachments).forEach { (w, got) -> assertArrayEquals(w, got, name) }
            client.emit("e", *args)
        }
        assertEquals(fixture["encode"]!!.jsonArray.size.toULong(), client.outbox.stats().pending)
        client.shutdown()
    }

    @Test
    fun `the core refuses what the fixture refuses`() = runBlocking {
        val client = PulselinkClient(ClientConfig(url = "http://127.0.0.1:9"))
        for (case in fixture["refuse"]!!.jsonArray.map { it.jsonObject }) {
            val attachments = case["attachments"]!!.jsonArray.map { bytes(it) }
            assertThrows<PulselinkException.InvalidArgs>(case["name"]!!.jsonPrimitive.content) {
                runBlocking { client.client.mainSocket().emit("e", case["json"]!!.jsonPrimitive.content, attachments) }
            }
        }
        client.shutdown()
    }

    @Test
    fun `calls that carry JSON only refuse binary`() = runBlocking {
        val client = PulselinkClient(ClientConfig(url = "http://127.0.0.1:9"))
        val blob = mapOf("frame" to byteArrayOf(1))
        for (call in fixture["no_binary"]!!.jsonArray.map { it.jsonPrimitive.content }) {
            val e = assertThrows<PulselinkException.InvalidArgs>(call) {
                runBlocking {
                    when (call) {
                        "subscribe" -> client.subscribe("room:subscribe", blob)
                        "unsubscribe" -> client.unsubscribe("room:subscribe", blob)
                        else -> error("the fixture names an unknown call $call")
                    }
                }
            }
            assertEquals(true, e.message?.contains("binary"), e.message)
        }
        client.shutdown()
    }
}
