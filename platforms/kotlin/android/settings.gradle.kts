// Android library module packaging Pulselink as an AAR. Build with ./build-aar.sh (needs the
// Android SDK + NDK and cargo-ndk; see ../README.md).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "pulselink-android"
