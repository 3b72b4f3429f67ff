// swift-tools-version:5.9
// Pulselink for iOS and macOS: the Rust core as an XCFramework (PulselinkFFI, built by
// build-xcframework.sh) and the Swift module `Pulselink`: the UniFFI-generated bindings
// (Sources/Pulselink/Generated, written by the same script) plus the async wrapper.
import PackageDescription

let package = Package(
    name: "Pulselink",
    platforms: [.iOS(.v16), .macOS(.v13), .watchOS(.v9)],
    products: [
        .library(name: "Pulselink", targets: ["Pulselink"]),
    ],
    targets: [
        .binaryTarget(name: "PulselinkFFI", path: "build/PulselinkFFI.xcframework"),
        .target(name: "Pulselink", dependencies: ["PulselinkFFI"], path: "Sources/Pulselink"),
        .testTarget(name: "PulselinkTests", dependencies: ["Pulselink"], path: "Tests/PulselinkTests"),
    ]
)
