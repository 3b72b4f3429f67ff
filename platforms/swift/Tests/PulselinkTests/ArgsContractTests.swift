// The shared argument contract (tests/fixtures/args.json), run against the Swift wrapper; the
// Rust, Python and Kotlin suites run the same file. Not run on the Linux CI machine (no Swift
// toolchain): check_api.py only proves the generated declarations it calls exist.
import Foundation
import XCTest
@testable import Pulselink

final class ArgsContractTests: XCTestCase {
    /// tests/fixtures/args.json, found from this file's path in the repository.
    static let fixture: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tests/fixtures/args.json")
        let data = try! Data(contentsOf: url)
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    /// The fixture's arguments as Swift values: `{"$bytes": b64}` becomes `Data`.
    static func native(_ value: Any) -> Any {
        if let dict = value as? [String: Any] {
            if dict.count == 1, let b64 = dict["$bytes"] as? String { return Data(base64Encoded: b64)! }
            return dict.mapValues(native)
        }
        if let array = value as? [Any] { return array.map(native) }
        return value
    }

    static func blobs(_ list: Any?) -> [Data] {
        (list as? [String] ?? []).map { Data(base64Encoded: $0)! }
    }

    func testArgumentsEncodeAsTheFixtureSaysAndTheCoreTakesThem() async throws {
        let client = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9"))
        let cases = Self.fixture["encode"] as! [[String: Any]]
        for c in cases {
            let name = c["name"] as! String
            let args = (c["args"] as! [Any]).map(Self.native)
            let encoded = try Arguments.encode(args)
            let parsed = try JSONSerialization.jsonObject(with: Data(encoded.json.utf8), options: [.fragmentsAllowed])
            XCTAssertEqual(parsed as? NSArray, c["json"] as? NSArray, name)
            XCTAssertEqual(encoded.attachments, Self.blobs(c["attachments"]), name)
            try await client.socket.emitWith(event: "e", argsJson: encoded.json, options: EmitOptions(), attachments: encoded.attachments)
        }
        let pending = try await client.outbox.stats().pending
        XCTAssertEqual(pending, UInt64(cases.count))
        try await client.close()
    }

    func testTheCoreRefusesWhatTheFixtureRefuses() async throws {
        let client = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9"))
        for c in Self.fixture["refuse"] as! [[String: Any]] {
            do {
                try await client.socket.emit(event: "e", argsJson: c["json"] as! String, attachments: Self.blobs(c["attachments"]))
                XCTFail("\(c["name"]!) was accepted")
            } catch PulselinkError.InvalidArgs {}
        }
        try await client.close()
    }

    func testCallsThatCarryJsonOnlyRefuseBinary() async throws {
        let client = try PulselinkClient(ClientConfig(url: "http://127.0.0.1:9"))
        for call in Self.fixture["no_binary"] as! [String] {
            do {
                switch call {
                case "subscribe": try await client.subscribe("room:subscribe", ["frame": Data([1])])
                case "unsubscribe": try await client.unsubscribe("room:subscribe", ["frame": Data([1])])
                default: XCTFail("the fixture names an unknown call \(call)")
                }
                XCTFail("\(call) took binary")
            } catch PulselinkError.InvalidArgs(let message) {
                XCTAssertTrue(message.contains("binary"), message)
            }
        }
        try await client.close()
    }
}
