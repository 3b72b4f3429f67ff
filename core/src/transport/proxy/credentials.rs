//! A proxy's user name and password, kept out of every `Debug` and error.

/// A user name and password for a proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}
