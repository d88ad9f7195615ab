//! `ApiError`: a status, a stable snake_case code and a human message — the one shape of every
//! error response. Conversions from store and auth errors decide the status here, once.

use crate::auth::AuthError;
use crate::store::StoreError;
use crate::token::TokenError;
use lambda_http::http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The cause, for the log line only; never sent to the client.
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON",
        )
        .with_detail(detail)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn missing_credentials(what: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
            format!("send {what}"),
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the session token is unknown, expired or revoked",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn cache_miss() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "cache_miss",
            "no cached data for this user",
        )
    }

    /// No session of the caller's has this id: an unknown id and another user's alike.
    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no session of yours has this session_id",
        )
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("use {allowed}"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the session store is unavailable; try again shortly",
        )
        .with_detail(e.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::invalid_token().with_detail(e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(reason) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_jwt",
                "the Clerk token is invalid or expired",
            )
            .with_detail(reason),
            AuthError::KeysUnavailable(reason) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the sign-in keys could not be fetched; try again shortly",
            )
            .with_detail(reason),
        }
    }
}
