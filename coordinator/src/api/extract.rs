//! Extractors whose rejections are problem documents: path parameters, query strings and
//! bodies (size-limited by `DefaultBodyLimit`; parsed as JSON after authentication, so an
//! unauthenticated caller learns nothing from body errors).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// `Path<T>` answering bad parameters with a problem.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| {
                Problem::bad_request(
                    "invalid_path",
                    format!("the URL path is not valid: {}", e.body_text()),
                )
            })
    }
}

/// `Query<T>` answering bad query strings with a problem.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| {
                Problem::bad_request(
                    "invalid_query",
                    format!(
                        "the query string is not valid: {}; see /v1/openapi.json for the \
                         parameters",
                        e.body_text()
                    ),
                )
            })
    }
}

/// The raw body, limited in size; parse it with [`json`] once the caller is authorised.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let body =
            Bytes::from_request(req, state)
                .await
                .map(Body)
                .map_err(|e: BytesRejection| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body_too_large",
                            "the request body is larger than this coordinator accepts \
                         (--body-limit); send a smaller document",
                        )
                    } else {
                        Problem::bad_request(
                            "invalid_body",
                            format!("the request body could not be read: {}", e.body_text()),
                        )
                    }
                })?;
        let empty = body.0.iter().all(u8::is_ascii_whitespace);
        if !empty && !content_type.as_deref().is_some_and(is_json) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "the body must be JSON sent with `Content-Type: application/json` (got {})",
                    content_type.map_or_else(
                        || "no Content-Type".to_owned(),
                        |c| { format!("`{}`", crate::audit::bounded(&c, 60)) }
                    )
                ),
            ));
        }
        Ok(body)
    }
}

/// `application/json` or `application/<x>+json`, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Parses a JSON body; an empty body counts as `{}`. Syntax errors answer `invalid_json`,
/// wrong fields (unknown, missing, mistyped) `invalid_body`.
pub fn json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // Syntax first, so `[1,2` is reported as broken JSON rather than as a wrong type.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        Problem::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Problem::bad_request(
                "invalid_body",
                format!("the JSON body does not fit this endpoint: {e}; see /v1/openapi.json"),
            ),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct B {
        #[serde(default)]
        a: Option<u32>,
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn body_errors_have_codes() {
        assert!(json::<B>(&Bytes::from_static(b"")).is_ok());
        assert_eq!(
            json::<B>(&Bytes::from_static(b"{"))
                .expect_err("an error")
                .code,
            "invalid_json"
        );
        assert_eq!(
            json::<B>(&Bytes::from_static(b"{\"zz\":1}"))
                .expect_err("an error")
                .code,
            "invalid_body"
        );
        assert_eq!(
            json::<B>(&Bytes::from_static(b"{\"a\":\"x\"}"))
                .expect_err("an error")
                .code,
            "invalid_body"
        );
    }
}
