// XCTest suite for the Swift wrapper against the official Node Socket.IO server
// (tests/node/server.js; `npm ci --prefix tests/node` first). Runs on macOS with
// `./build-xcframework.sh && swift test`; not run on the Linux CI machine (no Swift toolchain).
import Foundation
import XCTest
@testable import Pulselink

final class PulselinkClientTests: XCTestCase {
    var server: NodeServer!

    override func setUpWithError() throws { server = try NodeServer() }
    override func tearDown() { server.kill() }

    func testConnectsWithRefreshedTokenExchangesEventsAndAcks() async throws {
        let asked = Locked<[Bool]>([])
        let client = try PulselinkClient(ClientConfig(url: server.url)) { request in
            asked.mutate { $0.append(request.refresh) }
            return ["token": request.refresh ? "fresh" : "stale"]
        }
        let events = client.events()
        try await client.connect()
        XCTAssertEqual(client.state, .connected)
        XCTAssertEqual(asked.value, [false, true])

        var iterator = events.makeAsyncIterator()
        let welcome = await iterator.next()
        XCTAssertEqual(welcome?.name, "welcome")
        let auth = (welcome?.args.first as? [String: Any])?["auth"] as? [String: Any]
        XCTAssertEqual(auth?["token"] as? String, "fresh")

        let reply = try await client.emitWithAck("quiz:answer_submit", "A", timeout: .seconds(5))
        XCTAssertEqual((reply.first as? [String: Any])?["answer"] as? String, "A")

        let blob = Data((0..<300).map { UInt8($0 % 256) })
        try await client.emit("echo", ["n": 1], blob)
        while let ev = await iterator.next() {
            if ev.name == "echo" {
                XCTAssertEqual(ev.args[1] as? Data, blob)
                break
            }
        }
        try await client.close()
        XCTAssertEqual(client.state, .closed)
        let rest = await iterator.next()
        XCTAssertNil(rest, "closing ends every sequence")
    }

    func testRefusedCredentialsEndInUnauthorized() async throws {
        let client = try PulselinkClient(ClientConfig(url: server.url)) { _ in ["token": "bad"] }
        do {
            try await client.connect()
            XCTFail("a refused token must throw")
        } catch PulselinkError.Unauthorized(let message) {
            XCTAssertTrue(message.contains("Authentication failed"), message)
        }
        try await client.close()
    }

    func testClientsOfAHubKeepTheirOwnIdentities() async throws {
        let hub = try Hub()
        var keys = Set<String>()
        for i in 0..<5 {
            let device = try PulselinkClient(ClientConfig(url: server.url, authJson: "{\"token\":\"dev-\(i)\"}"), hub: hub)
            try await device.connect()
            let reply = try await device.emitWithAck("echo", ["d": i])
            let first = try XCTUnwrap(reply.first as? [String: Any])
            XCTAssertEqual(first["d"] as? Int, i)
            let key = try XCTUnwrap(first["idempotencyKey"] as? String)
            keys.insert(String(key[..<key.lastIndex(of: "-")!]))
            try await device.close()
        }
        // One idempotency-key prefix per device: each has its own store and identity.
        XCTAssertEqual(keys.count, 5)
        // Every client's notices on one stream, each naming its client.
        let fleet = hub.noticeStream
        let refused = try PulselinkClient(ClientConfig(url: server.url, authJson: "{\"token\":\"bad\"}"), hub: hub)
        XCTAssertEqual(refused.hubIndex, 5)
        try refused.start()
        var named: UInt64?
        for await n in fleet {
            if case .connectError = n.notice {
                named = n.client
                break
            }
        }
        XCTAssertEqual(named, refused.hubIndex)
        try await refused.close()
    }

    func testTheOutboxOutlivesTheClientThatQueuedIt() async throws {
        let store = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString + ".db").path
        let offline = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9", store: StoreConfig(path: store)))
        for n in 0..<5 { try await offline.emit("tick", ["n": n], options: EmitOptions(confirm: true)) }
        try await offline.close()

        let client = try PulselinkClient(ClientConfig(url: server.url, store: StoreConfig(path: store)))
        try await client.connect()
        try await client.outbox.drained()
        XCTAssertEqual(server.ledger().map { $0.split(separator: " ")[1] }, ["0", "1", "2", "3", "4"])
        try await client.close()
    }

    func testSpeaksTheJsonEnvelopeProtocolWithTheSameAPI() async throws {
        let envelope = try NodeServer(script: "envelope-server.js")
        defer { envelope.kill() }
        let config = ClientConfig(url: envelope.wsUrl, protocol: .envelope(pingIntervalMs: nil, pingTimeoutMs: nil))
        let client = try PulselinkClient(config) { _ in ["token": "swift", "userId": "u7"] }
        try await client.connect()
        try await client.subscribe("subscribe", ["eventTypes": ["scores:updated"]])
        var scores = client.events(named: "scores:updated").makeAsyncIterator()
        let reply = try await client.emitWithAck("publish", ["type": "scores:updated", "data": ["home": 3]])
        XCTAssertEqual((reply.first as? [String: Any])?["delivered"] as? Int, 1)
        let score = await scores.next()
        XCTAssertEqual((score?.args.first as? [String: Any])?["home"] as? Int, 3)
        do {
            _ = try await client.emitWithAck("reject-me", ["a": 1])
            XCTFail("the server refuses reject-me")
        } catch PulselinkError.Rejected(let message) {
            XCTAssertTrue(message.contains("INVALID_MESSAGE_FORMAT"), message)
        }
        try await client.close()
    }

    func testGoesToTheBackgroundAfterAFlushAndComesBack() async throws {
        let client = try PulselinkClient(ClientConfig(url: server.url, reconnect: ReconnectConfig(initialDelayMs: 50, maxDelayMs: 250)))
        try await client.connect()
        try client.networkChanged(NetworkPath(available: true, interface: .cellular, expensive: true, constrained: false))
        for n in 0..<20 { try await client.emit("tick", ["n": n]) }
        let flush = try await client.enterBackground(deadline: 2)
        XCTAssertEqual(flush.remaining, 0)
        for await state in client.states where state == .background { break }
        try await client.emit("tick", ["n": 20])
        XCTAssertEqual(try await client.outbox.stats().pending, 1)
        // Time in the background is what the metric measures: spend a known amount there.
        let stayMs: UInt64 = 50
        try await Task.sleep(nanoseconds: stayMs * 1_000_000)
        try client.enterForeground()
        for await state in client.states where state == .connected { break }
        try await client.outbox.drained()
        let metrics = try await client.metrics()
        XCTAssertGreaterThanOrEqual(metrics.stateTimes.backgroundMs, stayMs)
        try await client.close()
        XCTAssertThrowsError(try client.enterForeground())
    }

    func testBadInputIsAClearError() async throws {
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(url: "not a url")))
        let client = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9"))
        do {
            _ = try await client.emitWithAck("x", 1, timeout: .milliseconds(50))
            XCTFail("no server, no ack")
        } catch PulselinkError.AckTimeout {}
        try await client.close()
    }

    func testTlsOptionsAreCheckedBeforeAnyConnection() throws {
        // No trust anchor at all would refuse every server: a configuration error, at once.
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(
            url: "wss://example.com", tls: TlsConfig(builtinRoots: false))))
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(
            url: "wss://example.com", tls: TlsConfig(pins: ["md5/nope"]))))
        XCTAssertThrowsError(try certificatePins(pem: "not a certificate"))
    }

    func testProxySettingsAreCheckedBeforeAnyConnection() throws {
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9", proxy: ProxyConfig())))
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(
            url: "http://127.0.0.1:9", proxy: ProxyConfig(url: "ftp://proxy:1"))))
        do {
            _ = try PulselinkClient(ClientConfig(
                url: "http://127.0.0.1:9", proxy: ProxyConfig(url: "gopher://u:S3CRET@proxy:1")))
            XCTFail("accepted an unknown proxy scheme")
        } catch PulselinkError.InvalidConfig(let message) {
            XCTAssertFalse(message.contains("S3CRET"))
        }
        let client = try PulselinkClient(ClientConfig(
            url: "http://127.0.0.1:9",
            proxy: ProxyConfig(url: "socks5h://127.0.0.1:1", username: "u", password: "p", noProxy: ["example.com"])))
        _ = client
        #if canImport(CFNetwork)
        _ = ProxyConfig.system(for: URL(string: "wss://example.com")!)
        #endif
    }

    func testServerSignalsAreCheckedBeforeAnyConnection() throws {
        let seed = ServerSignals(
            seedPreset: true,
            heartbeat: AppHeartbeat(event: "ping", reply: "pong", intervalMs: 30_000, timeoutMs: 10_000),
            errorActions: ["QUOTA_EXHAUSTED": .pauseOutbox])
        _ = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9", signals: seed))
        // A heartbeat that never waits is refused at once.
        XCTAssertThrowsError(try PulselinkClient(ClientConfig(
            url: "http://127.0.0.1:9",
            signals: ServerSignals(heartbeat: AppHeartbeat(event: "ping", reply: "pong", intervalMs: 0, timeoutMs: 1)))))
    }

    func testPresenceViewStartsEmptyAndStops() throws {
        let client = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9"))
        let presence = client.presence(PresenceConfig(room: "r1"))
        XCTAssertEqual(presence.users(), [])
        presence.cancel()
        _ = client.changes(of: presence)
    }

    func testAnEncryptedOutboxNeedsItsKey() async throws {
        let store = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        func config(_ key: OutboxKey?) -> ClientConfig {
            ClientConfig(url: "http://127.0.0.1:9", store: StoreConfig(path: store, encryptionKey: key))
        }
        let key = try OutboxKey.generate()
        let client = try PulselinkClient(config(key))
        _ = try await client.emit("tick", ["note": "private-reading"], options: EmitOptions(confirm: true))
        try await client.close()
        let onDisk = try Data(contentsOf: URL(fileURLWithPath: store))
        XCTAssertNil(onDisk.range(of: Data("private-reading".utf8)))
        XCTAssertThrowsError(try PulselinkClient(config(nil)))
        XCTAssertThrowsError(try PulselinkClient(config(try OutboxKey.generate())))
        let again = try PulselinkClient(config(try OutboxKey.parse(text: key.toBase64())))
        try await again.close()
    }
}

/// A value shared with the auth closure, which runs on another thread.
final class Locked<T>: @unchecked Sendable {
    private var inner: T
    private let lock = NSLock()
    init(_ value: T) { inner = value }
    var value: T { lock.lock(); defer { lock.unlock() }; return inner }
    func mutate(_ f: (inout T) -> Void) { lock.lock(); f(&inner); lock.unlock() }
}

/// tests/node/<script> on loopback (server.js: Socket.IO; envelope-server.js: JSON envelopes).
final class NodeServer {
    let process = Process()
    let ledgerPath = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
    private(set) var port = 0
    var url: String { "http://127.0.0.1:\(port)" }
    var wsUrl: String { "ws://127.0.0.1:\(port)/ws" }

    init(script: String = "server.js") throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../..").standardized
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["node", root.appendingPathComponent("tests/node/\(script)").path]
        process.environment = ProcessInfo.processInfo.environment.merging(["PORT": "0", "LEDGER": ledgerPath]) { $1 }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var line = Data()
        while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) {
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening "), let p = Int(text.dropFirst("listening ".count)) else {
            throw NSError(domain: "NodeServer", code: 1, userInfo: [NSLocalizedDescriptionKey: text])
        }
        port = p
    }

    func kill() { process.terminate(); process.waitUntilExit() }

    func ledger() -> [String] {
        ((try? String(contentsOfFile: ledgerPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}
