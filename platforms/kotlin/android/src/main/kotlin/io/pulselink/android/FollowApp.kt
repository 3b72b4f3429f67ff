package io.pulselink.android

import android.content.Context
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import androidx.lifecycle.DefaultLifecycleObserver
import androidx.lifecycle.LifecycleOwner
import androidx.lifecycle.ProcessLifecycleOwner
import io.pulselink.Interface
import io.pulselink.NetworkPath
import io.pulselink.PulselinkException
import io.pulselink.ktx.PulselinkClient
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds

/**
 * Reports the app's life to a [PulselinkClient]: the process going to the background
 * (`enterBackground`, which flushes the outbox for up to [backgroundFlush] and then applies the
 * client's background policy) and coming back (`enterForeground`), and the default network's
 * path (`networkChanged`: Wi-Fi, cellular or Ethernet; metered; Data Saver).
 *
 * Android does not promise a backgrounded process any time at all: the flush runs while the
 * process lives. An app whose connection must outlive the UI runs a foreground service and
 * configures `BackgroundPolicy.KEEP_ALIVE`.
 *
 * Needs `android.permission.ACCESS_NETWORK_STATE` (declared by this library's manifest).
 * Call [close] to stop following.
 */
class AppLifecycleAdapter(
    private val client: PulselinkClient,
    context: Context,
    private val backgroundFlush: Duration = 10.seconds,
) : DefaultLifecycleObserver, AutoCloseable {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.Default)
    private val connectivity = context.applicationContext.getSystemService(ConnectivityManager::class.java)

    /** The background flush under way, cancelled if the app comes back first. */
    @Volatile
    private var flush: Job? = null

    private val callback = object : ConnectivityManager.NetworkCallback() {
        // API 24–25 do not follow onAvailable with onCapabilitiesChanged: ask.
        override fun onAvailable(network: Network) = ifOpen {
            connectivity.getNetworkCapabilities(network)?.let { client.networkChanged(pathOf(it)) }
        }

        override fun onCapabilitiesChanged(network: Network, caps: NetworkCapabilities) =
            ifOpen { client.networkChanged(pathOf(caps)) }

        override fun onLost(network: Network) = ifOpen {
            client.networkChanged(NetworkPath(available = false, `interface` = Interface.OTHER, expensive = false, constrained = false))
        }
    }

    /** Starts following the process lifecycle and the default network. */
    fun start(): AppLifecycleAdapter {
        scope.launch(Dispatchers.Main.immediate) { ProcessLifecycleOwner.get().lifecycle.addObserver(this@AppLifecycleAdapter) }
        connectivity.registerDefaultNetworkCallback(callback)
        return this
    }

    override fun onStart(owner: LifecycleOwner) {
        // A flush not yet started must not close the link behind the app's back.
        flush?.cancel()
        ifOpen { client.enterForeground() }
    }

    override fun onStop(owner: LifecycleOwner) {
        flush = scope.launch {
            try {
                client.enterBackground(backgroundFlush)
            } catch (_: PulselinkException.Closed) {
                // The client was closed meanwhile: nothing to follow.
            } catch (e: PulselinkException) {
                // Nothing the app could do about it here; what was not sent stays stored.
                android.util.Log.w("Pulselink", "background flush: ${e.message}")
            }
        }
    }

    override fun close() {
        runCatching { connectivity.unregisterNetworkCallback(callback) }
        scope.launch(Dispatchers.Main.immediate) { ProcessLifecycleOwner.get().lifecycle.removeObserver(this@AppLifecycleAdapter) }
            .invokeOnCompletion { scope.cancel() }
    }

    private fun pathOf(caps: NetworkCapabilities) = NetworkPath(
        available = caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET),
        `interface` = when {
            caps.hasTransport(NetworkCapabilities.TRANSPORT_WIFI) -> Interface.WIFI
            caps.hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR) -> Interface.CELLULAR
            caps.hasTransport(NetworkCapabilities.TRANSPORT_ETHERNET) -> Interface.WIRED
            else -> Interface.OTHER
        },
        expensive = !caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED),
        constrained = connectivity.restrictBackgroundStatus == ConnectivityManager.RESTRICT_BACKGROUND_STATUS_ENABLED,
    )

    /** Calls the client; once it is closed there is nothing more to follow (not an error). */
    private inline fun ifOpen(call: () -> Unit) {
        try {
            call()
        } catch (_: PulselinkException.Closed) {
            close()
        }
    }
}

/** Follows the app's lifecycle and network for this client; close the result to stop. */
fun PulselinkClient.followApp(context: Context, backgroundFlush: Duration = 10.seconds): AutoCloseable =
    AppLifecycleAdapter(this, context, backgroundFlush).start()
