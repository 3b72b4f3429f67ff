#!/usr/bin/env bash
# Generates the Kotlin and Swift bindings from the compiled pulselink-ffi library into
# platforms/<language>/generated (never committed). Python's come from maturin, inside the
# wheel (platforms/python).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-debug}
target=${CARGO_TARGET_DIR:-$PWD/target}
if [ "$profile" = debug ]; then
  cargo build --locked -p pulselink-ffi -p uniffi-bindgen
else
  cargo build --locked --profile "$profile" -p pulselink-ffi -p uniffi-bindgen
fi
lib="$target/$profile/libpulselink_ffi.so"
bindgen="$target/$profile/uniffi-bindgen"
for lang in kotlin swift; do
  out="platforms/$lang/generated"
  rm -rf "$out"
  "$bindgen" generate --library "$lib" --language "$lang" --out-dir "$out" --config uniffi.toml --no-format
done
# Check the names the platform wrappers rely on.
grep -q '^package io.pulselink' platforms/kotlin/generated/io/pulselink/pulselink.kt
grep -q 'class Client' platforms/swift/generated/Pulselink.swift
grep -q 'module PulselinkFFI' platforms/swift/generated/PulselinkFFI.modulemap
echo "bindings generated under platforms/{kotlin,swift}/generated"
