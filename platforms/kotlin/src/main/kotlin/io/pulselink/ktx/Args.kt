package io.pulselink.ktx

import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.int
import kotlinx.serialization.json.intOrNull

/**
 * Emit arguments as the core takes them: a JSON array text and the binary attachments it
 * references by Socket.IO placeholders (`{"_placeholder":true,"num":N}`).
 */
internal class EncodedArgs(val json: String, val attachments: List<ByteArray>)

/**
 * Encodes `args`: [JsonElement]s as they are; strings, numbers, booleans and `null` as JSON
 * values; [ByteArray]s as binary attachments; [Map]s and [List]s recursively.
 */
internal fun encodeArgs(args: Array<out Any?>): EncodedArgs {
    val attachments = mutableListOf<ByteArray>()
    fun lift(value: Any?): JsonElement = when (value) {
        null -> JsonNull
        is JsonElement -> value
        is String -> JsonPrimitive(value)
        is Number -> JsonPrimitive(value)
        is Boolean -> JsonPrimitive(value)
        is ByteArray -> {
            attachments += value
            JsonObject(mapOf("_placeholder" to JsonPrimitive(true), "num" to JsonPrimitive(attachments.size - 1)))
        }
        is Map<*, *> -> JsonObject(value.entries.associate { (k, v) -> k.toString() to lift(v) })
        is List<*> -> JsonArray(value.map(::lift))
        is Array<*> -> JsonArray(value.map(::lift))
        else -> throw IllegalArgumentException(
            "cannot send a ${value::class.qualifiedName}: pass a JsonElement (Json.encodeToJsonElement(value))",
        )
    }
    val json = JsonArray(args.map(::lift)).toString()
    return EncodedArgs(json, attachments)
}

/** Parses the core's argument text; invalid JSON cannot come from the core (it validates). */
internal fun decodeArgs(json: String): JsonArray = Json.parseToJsonElement(json) as JsonArray

/** The attachment a placeholder refers to, or `null` when `element` is not a placeholder. */
fun JsonElement.attachment(attachments: List<ByteArray>): ByteArray? {
    val obj = this as? JsonObject ?: return null
    val isPlaceholder = (obj["_placeholder"] as? JsonPrimitive)?.booleanOrNull == true
    val num = (obj["num"] as? JsonPrimitive)?.intOrNull ?: return null
    return if (isPlaceholder) attachments.getOrNull(num) else null
}
