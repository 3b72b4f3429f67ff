// The AAR: the UniFFI-generated Kotlin (../generated), the coroutine wrapper shared with the
// JVM build (../src/main/kotlin) and libpulselink_ffi.so for each ABI (src/main/jniLibs,
// written by build-aar.sh). Versions match ../pom.xml.
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.2.20"
}

android {
    namespace = "io.pulselink"
    compileSdk = 35
    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }
    // The Android-only adapter (process lifecycle, connectivity) lives in src/main/kotlin.
    sourceSets["main"].java.srcDirs("../generated", "../src/main/kotlin", "src/main/kotlin")
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // JNA's AAR carries its own native dispatch library for every Android ABI.
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
    implementation("org.jetbrains.kotlinx:kotlinx-serialization-json:1.9.0")
    // ProcessLifecycleOwner, for AppLifecycleAdapter.
    implementation("androidx.lifecycle:lifecycle-process:2.8.7")
}
