package io.pulselink.ktx

import io.pulselink.ClientConfig
import io.pulselink.StoreConfig
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking

/**
 * The program [PulselinkClientTest] runs in a child JVM to prove a clean exit: a client drains
 * a backlog while one coroutine collects its events and another its states; both are
 * cancelled, the client shut down, and `main` returns. Arguments: URL, store path.
 */
fun main(args: Array<String>) = runBlocking {
    val client = PulselinkClient(ClientConfig(url = args[0], store = StoreConfig(path = args[1])))
    val events = launch(start = CoroutineStart.UNDISPATCHED) { client.events().collect { } }
    val states = launch(start = CoroutineStart.UNDISPATCHED) { client.state.collect { } }
    client.start()
    client.outbox.drained()
    events.cancel()
    states.cancel()
    client.shutdown()
}
