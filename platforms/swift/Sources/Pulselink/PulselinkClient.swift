// The Swift face of Pulselink: async/await, AsyncSequence and Codable over the generated
// bindings (Generated/Pulselink.swift). No logic of its own beyond argument encoding.
import Foundation

/// One inbound event, arguments decoded.
public struct InboundEvent: @unchecked Sendable {
    /// Namespace it arrived on, e.g. `/`.
    public let namespace: String
    /// Event name, e.g. `metric:recorded`.
    public let name: String
    /// Arguments as Foundation objects (`JSONSerialization`); binary arguments are `Data`.
    public let args: [Any]
    /// The raw JSON array, for `JSONDecoder` (`decode(_:)`).
    public let argsJson: String
    /// The event's unique id when the protocol carries one (recovery offset or envelope id).
    public let id: String?
    private let responder: AckResponder?

    init(_ e: Event) {
        namespace = e.namespace
        name = e.name
        argsJson = e.argsJson
        args = Arguments.decode(e.argsJson, attachments: e.attachments)
        id = e.id
        responder = e.ack
    }

    /// True when the server waits for an acknowledgement: answer with `ack(_:)`.
    public var wantsAck: Bool { responder != nil }

    /// Answers the server's acknowledgement request (`Data` travels as binary attachments).
    public func ack(_ args: Any...) throws {
        guard let responder else { throw PulselinkError.InvalidArgs(message: "event '\(name)' did not ask for an acknowledgement") }
        let a = try Arguments.encode(args)
        try responder.send(argsJson: a.json, attachments: a.attachments)
    }

    /// Decodes argument `index` as `T`.
    public func decode<T: Decodable>(_ type: T.Type, at index: Int = 0) throws -> T {
        let all = try JSONSerialization.jsonObject(with: Data(argsJson.utf8)) as? [Any] ?? []
        guard index < all.count else { throw PulselinkError.InvalidArgs(message: "no argument \(index)") }
        let one = try JSONSerialization.data(withJSONObject: all[index], options: [.fragmentsAllowed])
        return try JSONDecoder().decode(T.self, from: one)
    }
}

/// Inbound events pulled a batch at a time. Unlike an `AsyncStream`, nothing is buffered on
/// the Swift side: a consumer that falls behind slows the connection (backpressure) and
/// never makes memory grow or events drop. Iteration ends when the client is closed.
public struct EventSequence: AsyncSequence, Sendable {
    public typealias Element = InboundEvent
    let receiver: EventReceiver

    /// Stops delivery; a pending `next()` returns `nil`.
    public func cancel() { receiver.cancel() }

    public func makeAsyncIterator() -> Iterator { Iterator(receiver: receiver) }

    /// Iterator over the batches of one receiver.
    public struct Iterator: AsyncIteratorProtocol {
        let receiver: EventReceiver
        var batch: [Event] = []
        var index = 0

        public mutating func next() async -> InboundEvent? {
            if index == batch.count {
                batch = await receiver.nextBatch(max: 256)
                index = 0
                if batch.isEmpty { return nil }
            }
            defer { index += 1 }
            return InboundEvent(batch[index])
        }
    }
}

/// One namespace of a client's connection. Arguments are JSON values (`String`, numbers,
/// `Bool`, `NSNull`, arrays, dictionaries), `Data` (sent as binary), or `Encodable` values via
/// the generic overloads.
public class PulselinkSocket: @unchecked Sendable {
    let socket: Socket

    init(_ socket: Socket) { self.socket = socket }

    /// The namespace, e.g. `/rooms/r1`.
    public var namespace: String { socket.namespace() }

    /// Queues `event` in the durable outbox and returns its entry id: once this returns the
    /// emit survives a crash or an app kill and is delivered in order when connected (or it
    /// was delivered already: written to a healthy connection before it needed storing).
    @discardableResult
    public func emit(_ event: String, _ args: Any..., options: EmitOptions = EmitOptions()) async throws -> UInt64 {
        let a = try Arguments.encode(args)
        return try await socket.emitWith(event: event, argsJson: a.json, options: options, attachments: a.attachments)
    }

    /// Emits one `Encodable` value.
    @discardableResult
    public func emit<T: Encodable>(_ event: String, _ value: T, options: EmitOptions = EmitOptions()) async throws -> UInt64 {
        try await socket.emitWith(event: event, argsJson: Arguments.encode(value), options: options, attachments: [])
    }

    /// Emits durably and returns the server's acknowledgement arguments; throws
    /// `PulselinkError.AckTimeout` after `timeout` (the emit stays queued).
    public func emitWithAck(_ event: String, _ args: Any..., timeout: Duration = .seconds(10)) async throws -> [Any] {
        let a = try Arguments.encode(args)
        let reply = try await socket.emitWithAck(event: event, argsJson: a.json, timeoutMs: timeout.milliseconds, attachments: a.attachments)
        return Arguments.decode(reply.argsJson, attachments: reply.attachments)
    }

    /// Sends only if connected now; `false` when dropped.
    public func emitVolatile(_ event: String, _ args: Any...) throws -> Bool {
        let a = try Arguments.encode(args)
        return try socket.emitVolatile(event: event, argsJson: a.json, attachments: a.attachments)
    }

    /// Declares a subscription, sent and acknowledged on every (re)connect before queued emits
    /// flow and kept across restarts; `unsubscribe` names the event that undoes it.
    /// Subscriptions carry JSON only: `Data` throws `PulselinkError.InvalidArgs`.
    public func subscribe(_ event: String, _ args: Any..., unsubscribe: String? = nil) async throws {
        let a = try Arguments.encode(args)
        try await socket.subscribe(event: event, argsJson: a.json, unsubscribe: unsubscribe, attachments: a.attachments)
    }

    /// Forgets a subscription and sends its `unsubscribe` counterpart.
    public func unsubscribe(_ event: String, _ args: Any...) async throws {
        let a = try Arguments.encode(args)
        try await socket.unsubscribe(event: event, argsJson: a.json, attachments: a.attachments)
    }

    /// Events named `event` on this namespace, from now on.
    public func events(named event: String) -> EventSequence {
        EventSequence(receiver: socket.eventsNamed(event: event))
    }

    /// Leaves the namespace and stops rejoining it.
    public func leave() throws { try socket.leave() }

    /// Who is online in `config.room`, kept current from the server's presence events and
    /// re-fetched after every (re)connect: `users()` now, `changes(of:)` as they come.
    public func presence(_ config: PresenceConfig) -> Presence { socket.presence(config: config) }

    /// Every change of `presence` until it is cancelled.
    public func changes(of presence: Presence) -> AsyncStream<PresenceChange> {
        AsyncStream { continuation in
            let task = Task {
                while !Task.isCancelled, let change = await presence.nextChange() {
                    if case .terminated = continuation.yield(change) { break }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// A connection to a Socket.IO v4 server that loses nothing: durable outbox, reconnect with
/// backoff, subscriptions replayed, duplicates dropped.
public final class PulselinkClient: PulselinkSocket, @unchecked Sendable {
    /// The generated client, for what this wrapper does not cover.
    public let client: Client

    /// Creates a client; nothing connects until `connect()` or `start()`. `auth` is asked on
    /// every connect, and with `request.refresh` after the server refused the token or said it
    /// expired; it is async (a token refresh suspends, no thread waits for it). With `hub` (a
    /// gateway holding many device identities) the client's store runs on the hub's one
    /// thread, shared with its other clients; their store paths must differ.
    public init(
        _ config: ClientConfig,
        hub: Hub? = nil,
        auth: (@Sendable (AuthRequest) async throws -> [String: Any]?)? = nil
    ) throws {
        let provider = auth.map(AuthAdapter.init)
        if let hub {
            client = try hub.client(config: config, auth: provider)
        } else {
            client = try Client(config: config, auth: provider)
        }
        super.init(client.mainSocket())
    }

    /// Connects and returns once the main namespace is joined; throws
    /// `PulselinkError.Unauthorized` when the credentials are refused (also after a fresh
    /// token) or `PulselinkError.Connection` if not connected within `connectWaitMs`.
    public func connect() async throws { try await client.connect() }

    /// Starts connecting in the background and returns at once.
    public func start() throws { try client.start() }

    /// Disconnects and stops retrying until `connect()`; queued emits stay queued.
    public func disconnect() throws { try client.disconnect() }

    /// Closes for good: sends what the connection can still take, ends every sequence.
    public func close() async throws { try await client.shutdown() }

    /// The connection state now.
    public var state: State { client.state() }

    /// The current state, then every change, until the client is closed.
    public var states: AsyncStream<State> {
        let client = client
        return AsyncStream(bufferingPolicy: .bufferingNewest(1)) { continuation in
            let task = Task {
                var state = client.state()
                continuation.yield(state)
                while state != .closed, !Task.isCancelled {
                    state = await client.nextState(current: state)
                    continuation.yield(state)
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Reachability hint (from `NWPathMonitor`): `false` stops retrying, `true` reconnects now.
    public func setNetworkAvailable(_ available: Bool) throws { try client.setNetworkAvailable(available: available) }

    /// The app is going to the background: flushes the outbox for up to `deadline` (keep it
    /// under the background time iOS grants, about 30 s), then applies the configured
    /// `background` policy (`.disconnect` by default: the link closes and nothing is
    /// attempted until `enterForeground()`; emits are still stored). `followApp()` calls this
    /// inside a background task.
    @discardableResult
    public func enterBackground(deadline: TimeInterval = 10) async throws -> BackgroundFlush {
        try await client.enterBackground(deadlineMs: UInt64(max(0, deadline) * 1000))
    }

    /// Back in the foreground: connects at once when a connection is wanted.
    public func enterForeground() throws { try client.enterForeground() }

    /// The network path changed (from `NWPathMonitor`): unavailable stops attempts, another
    /// interface replaces the link at once, an expensive or constrained path may hold `.low`
    /// emits.
    public func networkChanged(_ path: NetworkPath) throws { try client.networkChanged(path: path) }

    /// The socket of `namespace`, joined now and on every reconnect.
    public func socket(_ namespace: String) throws -> PulselinkSocket {
        PulselinkSocket(try client.socket(namespace: namespace))
    }

    /// Every inbound event on every namespace, from now on: create it before `connect()` to
    /// see the first events.
    public func events() -> EventSequence { EventSequence(receiver: client.events()) }

    /// The number its `Hub` gave it, which `HubNotice.client` names; nil without a hub.
    public var hubIndex: UInt64? { client.hubIndex() }

    /// Lifecycle notices from now on.
    public var notices: AsyncStream<Notice> {
        let receiver = client.notices()
        return pulled { await receiver.nextBatch(max: 64) }
    }

    /// The durable outbox.
    public var outbox: Outbox { client.outbox() }

    /// Counters, outbox size and latency figures now.
    public func metrics() async throws -> Metrics { try await client.metrics() }
}

/// Presents a Swift async closure as the core's (async) auth provider.
final class AuthAdapter: AuthProvider, @unchecked Sendable {
    let auth: @Sendable (AuthRequest) async throws -> [String: Any]?

    init(_ auth: @escaping @Sendable (AuthRequest) async throws -> [String: Any]?) { self.auth = auth }

    func auth(request: AuthRequest) async throws -> String? {
        guard let object = try await auth(request) else { return nil }
        return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }
}

/// Arguments between Swift values and the core's JSON array text plus binary attachments.
enum Arguments {
    static func encode(_ args: [Any]) throws -> (json: String, attachments: [Data]) {
        var attachments: [Data] = []
        func lift(_ value: Any) -> Any {
            switch value {
            case let data as Data:
                attachments.append(data)
                return ["_placeholder": true, "num": attachments.count - 1]
            case let dict as [String: Any]:
                return dict.mapValues(lift)
            case let array as [Any]:
                return array.map(lift)
            default:
                return value
            }
        }
        let lifted = args.map(lift)
        guard JSONSerialization.isValidJSONObject(lifted) else {
            throw PulselinkError.InvalidArgs(message: "arguments must be JSON values or Data")
        }
        let data = try JSONSerialization.data(withJSONObject: lifted)
        return (String(decoding: data, as: UTF8.self), attachments)
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        "[" + String(decoding: try JSONEncoder().encode(value), as: UTF8.self) + "]"
    }

    static func decode(_ json: String, attachments: [Data]) -> [Any] {
        let parsed = (try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])) as? [Any] ?? []
        guard !attachments.isEmpty else { return parsed }
        func resolve(_ value: Any) -> Any {
            if let dict = value as? [String: Any] {
                if dict["_placeholder"] as? Bool == true, let num = dict["num"] as? Int, attachments.indices.contains(num) {
                    return attachments[num]
                }
                return dict.mapValues(resolve)
            }
            if let array = value as? [Any] { return array.map(resolve) }
            return value
        }
        return parsed.map(resolve)
    }
}

extension Hub {
    /// Every notice of this hub's clients from now on, each naming its client
    /// (`PulselinkClient.hubIndex`): a fleet is watched with one loop, not one per client.
    public var noticeStream: AsyncStream<HubNotice> {
        let receiver = notices()
        return pulled { await receiver.nextBatch(max: 64) }
    }
}

/// What a pull receiver returns, batch by batch, until an empty batch (its source closed);
/// the pulling stops when the stream's consumer goes away.
private func pulled<T: Sendable>(
    _ nextBatch: @escaping @Sendable () async -> [T]
) -> AsyncStream<T> {
    AsyncStream { continuation in
        let task = Task {
            while !Task.isCancelled {
                let batch = await nextBatch()
                if batch.isEmpty { break }
                batch.forEach { continuation.yield($0) }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
    }
}

extension Duration {
    /// Whole milliseconds, saturating at zero.
    var milliseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }
}
