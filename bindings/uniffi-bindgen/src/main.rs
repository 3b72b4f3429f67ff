//! Project-local `uniffi-bindgen`: generates the Swift, Kotlin and Python bindings from the
//! compiled `pulselink-ffi` library, using the exact uniffi version the library was built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
