#!/usr/bin/env bash
# Builds build/PulselinkFFI.xcframework (iOS device, iOS simulator, macOS) and writes the Swift
# bindings into Sources/Pulselink/Generated. Runs on macOS with Xcode and rustup.
#   cd platforms/swift && ./build-xcframework.sh && swift test
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
rustup target add "${targets[@]}"
for t in "${targets[@]}"; do
  cargo build --release --locked -p pulselink-ffi --target "$t"
done
cargo build --release --locked -p uniffi-bindgen

gen="$here/build/generated"
rm -rf "$gen" && mkdir -p "$gen"
target/release/uniffi-bindgen generate --library target/aarch64-apple-darwin/release/libpulselink_ffi.a \
  --language swift --out-dir "$gen" --config uniffi.toml
mkdir -p "$here/Sources/Pulselink/Generated"
cp "$gen/Pulselink.swift" "$here/Sources/Pulselink/Generated/"
# The C header and a module map named as SwiftPM expects inside an XCFramework.
mkdir -p "$gen/headers"
cp "$gen/PulselinkFFI.h" "$gen/headers/"
cp "$gen/PulselinkFFI.modulemap" "$gen/headers/module.modulemap"

lib=libpulselink_ffi.a
fat="$here/build/fat"
rm -rf "$fat" && mkdir -p "$fat/ios-sim" "$fat/macos"
lipo -create target/aarch64-apple-ios-sim/release/$lib target/x86_64-apple-ios/release/$lib -output "$fat/ios-sim/$lib"
lipo -create target/aarch64-apple-darwin/release/$lib target/x86_64-apple-darwin/release/$lib -output "$fat/macos/$lib"

rm -rf "$here/build/PulselinkFFI.xcframework"
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/$lib -headers "$gen/headers" \
  -library "$fat/ios-sim/$lib" -headers "$gen/headers" \
  -library "$fat/macos/$lib" -headers "$gen/headers" \
  -output "$here/build/PulselinkFFI.xcframework"
echo "built $here/build/PulselinkFFI.xcframework"
