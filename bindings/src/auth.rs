//! The auth provider foreign code implements, and its adapter to the core's trait.

use std::sync::Arc;

/// Why credentials are asked for, and for which namespace.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuthRequest {
    /// The namespace about to be joined.
    pub namespace: String,
    /// True when the server refused the previous credentials or said the token expired:
    /// return fresh ones (refresh the token) rather than a cached value.
    pub refresh: bool,
    /// What the server said, when `refresh` is true.
    pub message: Option<String>,
}

/// The provider could not produce credentials; the attempt counts as failed and is retried.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum AuthError {
    /// Details (never include the token itself: this text reaches logs).
    #[error("auth provider failed: {reason}")]
    Failed {
        /// What went wrong (`reason`, as `message` is taken by Kotlin's `Throwable`).
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for AuthError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed { reason: e.reason }
    }
}

/// Supplies the auth object for each namespace CONNECT, as JSON text (`{"token":"..."}`),
/// or `None` to connect without one. Asked on every connect and again after a refusal or
/// `token:expired`; it is async (a token refresh over HTTP suspends, it blocks no thread) and
/// runs on the foreign side's own executor: Python's event loop, a Kotlin coroutine, a Swift
/// task. An answer that takes longer than the connect timeout fails the attempt.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait AuthProvider: Send + Sync {
    /// Returns the auth object for `request`.
    async fn auth(&self, request: AuthRequest) -> Result<Option<String>, AuthError>;
}

/// Presents a foreign provider to the core.
pub(crate) struct Adapter(pub(crate) Arc<dyn AuthProvider>);

impl pulselink::AuthProvider for Adapter {
    fn auth(&self, request: pulselink::AuthRequest) -> pulselink::config::AuthFuture {
        let provider = self.0.clone();
        let (refresh, message) = match request.reason {
            pulselink::AuthReason::Connect => (false, None),
            pulselink::AuthReason::Refresh { message } => (true, Some(message)),
        };
        let request = AuthRequest {
            namespace: request.namespace,
            refresh,
            message,
        };
        Box::pin(async move {
            let answer = provider.auth(request).await.map_err(|e| e.to_string())?;
            answer
                .map(|text| {
                    serde_json::from_str(&text)
                        .map_err(|e| format!("auth provider returned invalid JSON: {e}"))
                })
                .transpose()
        })
    }
}
