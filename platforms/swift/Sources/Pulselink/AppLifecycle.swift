// Follows the app for a client: UIKit's background and foreground notifications (the flush
// wrapped in a background task) and NWPathMonitor's path. Each part compiles only where its
// framework exists, so the package still builds on Linux and macOS.
import Foundation
#if canImport(UIKit) && !os(watchOS)
import UIKit
#endif
#if canImport(Network)
import Network
#endif

/// Reports the app's life to a `PulselinkClient` until `stop()` (or until it is released).
/// watchOS apps call `enterBackground`/`enterForeground` from their `WKApplicationDelegate`;
/// the network path is followed everywhere `Network` exists.
public final class AppLifecycleFollower: @unchecked Sendable {
    private let client: PulselinkClient
    private let backgroundFlush: TimeInterval
    private var observers: [NSObjectProtocol] = []
    #if canImport(Network)
    private let monitor = NWPathMonitor()
    #endif

    init(client: PulselinkClient, backgroundFlush: TimeInterval) {
        self.client = client
        self.backgroundFlush = backgroundFlush
        #if canImport(UIKit) && !os(watchOS)
        let center = NotificationCenter.default
        observers.append(center.addObserver(forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: .main) { [weak self] _ in
            // Delivered on the main queue, as asked.
            MainActor.assumeIsolated { self?.enteredBackground() }
        })
        observers.append(center.addObserver(forName: UIApplication.willEnterForegroundNotification, object: nil, queue: .main) { [weak self] _ in
            try? self?.client.enterForeground()
        })
        #endif
        #if canImport(Network)
        monitor.pathUpdateHandler = { [weak self] path in
            try? self?.client.networkChanged(Self.networkPath(path))
        }
        monitor.start(queue: DispatchQueue(label: "io.pulselink.path"))
        #endif
    }

    deinit { stop() }

    /// Stops following.
    public func stop() {
        observers.forEach(NotificationCenter.default.removeObserver)
        observers.removeAll()
        #if canImport(Network)
        monitor.cancel()
        #endif
    }

    #if canImport(UIKit) && !os(watchOS)
    /// A background task, ended once: by the flush finishing or by iOS's time running out.
    @MainActor
    private final class BackgroundTask {
        private var id = UIBackgroundTaskIdentifier.invalid

        init() {
            id = UIApplication.shared.beginBackgroundTask(withName: "pulselink.flush") { [weak self] in
                MainActor.assumeIsolated { self?.end() }
            }
        }

        func end() {
            guard id != .invalid else { return }
            UIApplication.shared.endBackgroundTask(id)
            id = .invalid
        }
    }

    /// Flushes inside a background task, so iOS keeps the app running for it, and ends the
    /// task when the flush is over or iOS's time runs out, whichever comes first.
    @MainActor
    private func enteredBackground() {
        let task = BackgroundTask()
        // Leave iOS a margin of the time it granted.
        let granted = UIApplication.shared.backgroundTimeRemaining - 2
        let deadline = granted.isFinite ? min(backgroundFlush, max(0, granted)) : backgroundFlush
        let client = client
        Task { @MainActor in
            _ = try? await client.enterBackground(deadline: deadline)
            task.end()
        }
    }
    #endif

    #if canImport(Network)
    static func networkPath(_ path: NWPath) -> NetworkPath {
        let kind: Interface
        if path.usesInterfaceType(.wifi) {
            kind = .wifi
        } else if path.usesInterfaceType(.cellular) {
            kind = .cellular
        } else if path.usesInterfaceType(.wiredEthernet) {
            kind = .wired
        } else {
            kind = .other
        }
        return NetworkPath(available: path.status == .satisfied, interface: kind, expensive: path.isExpensive, constrained: path.isConstrained)
    }
    #endif
}

public extension PulselinkClient {
    /// Follows the app's background and foreground (iOS, iPadOS, tvOS, Mac Catalyst) and the
    /// network path (`NWPathMonitor`) for this client. Keep the returned follower; it stops
    /// when released or on `stop()`. The app must still declare what it needs to run in the
    /// background at all (see the README's "In the background").
    func followApp(backgroundFlush: TimeInterval = 25) -> AppLifecycleFollower {
        AppLifecycleFollower(client: self, backgroundFlush: backgroundFlush)
    }
}
