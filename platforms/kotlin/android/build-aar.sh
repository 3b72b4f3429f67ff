#!/usr/bin/env bash
# Builds the Pulselink AAR: the Rust core for arm64-v8a, armeabi-v7a and x86_64 with cargo-ndk,
# the Kotlin bindings, then the Android library with Gradle.
#
# Needs: the Android SDK and NDK (ANDROID_HOME, ANDROID_NDK_HOME), rustup targets
# aarch64-linux-android armv7-linux-androideabi x86_64-linux-android, cargo-ndk
# (`cargo install cargo-ndk`), and Gradle 8.9+ (or a wrapper: `gradle wrapper` once).
# Output: build/outputs/aar/pulselink-android-release.aar
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android
# Android 7.0 (API 24) is the oldest platform the module supports (minSdk in build.gradle.kts).
cargo ndk --platform 24 -t arm64-v8a -t armeabi-v7a -t x86_64 \
  -o "$here/src/main/jniLibs" build --release --locked -p pulselink-ffi

# Bindings from the host build of the same sources (the metadata is target-independent).
bash platforms/generate.sh

cd "$here"
if [ -x ./gradlew ]; then ./gradlew assembleRelease; else gradle assembleRelease; fi
ls -l build/outputs/aar/
