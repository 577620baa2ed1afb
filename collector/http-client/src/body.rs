//! Bounded reads of a backend's response body, the one way every component reads one.
//!
//! The body goes through `http_body_util::Limited`: a body longer than the limit is an error
//! ([`BodyError::TooLarge`]), never cut short without a word. Error texts meant for a message are
//! shortened visibly (with a marker saying how long the body was).

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// How much of an error response is read to classify it and quote it in a message.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Why a response body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The transport failed mid-body; the source is the client's error (a `reqwest::Error`).
    #[error("reading the response body: {}", error_chain(.0.as_ref()))]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The whole body of `response`, at most `limit` bytes; a longer body is [`BodyError::TooLarge`].
/// The client's timeouts apply to the read as they do to the request.
pub async fn read_body(response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    let body = Limited::new(reqwest::Body::from(response), limit);
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge { limit }),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// The text of an error response for a message and for matching a backend's error texts:
/// the body (read up to [`ERROR_BODY_LIMIT`]), trimmed, shortened to `max_chars` characters with
/// a marker when longer. A body that cannot be read is described instead.
pub async fn error_text(response: reqwest::Response, max_chars: usize) -> String {
    match read_body(response, ERROR_BODY_LIMIT).await {
        Ok(body) => shorten(String::from_utf8_lossy(&body).trim(), max_chars),
        Err(e) => format!("({e})"),
    }
}

/// `text` cut to `max_chars` characters, with a marker saying how long it was.
pub fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// An error and its sources, `outer: inner: root` (a client's top-level message is generic;
/// the cause says what happened).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP/1.1 server answering every connection with `body` (chunked, in
    /// `chunk`-byte pieces, so the limit is met across frames).
    async fn serve(status: u16, body: Vec<u8>, chunk: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    )
                    .into_bytes();
                    for piece in body.chunks(chunk.max(1)) {
                        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                    let _ = socket.write_all(&out).await;
                });
            }
        });
        format!("http://{addr}/")
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let url = serve(200, vec![b'a'; 1000], 100).await;
        let body = read_body(get(&url).await, 1000).await.unwrap();
        assert_eq!(body.len(), 1000);
    }

    #[tokio::test]
    async fn a_longer_body_is_an_error_not_a_prefix() {
        let url = serve(200, vec![b'a'; 1001], 100).await;
        let err = read_body(get(&url).await, 1000).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 1000 }), "{err}");
        assert_eq!(err.to_string(), "response body larger than 1000 bytes");
    }

    #[tokio::test]
    async fn error_text_is_shortened_visibly() {
        let url = serve(400, b"  entry too old for stream x  ".to_vec(), 7).await;
        assert_eq!(
            error_text(get(&url).await, 100).await,
            "entry too old for stream x"
        );
        let url = serve(400, "é".repeat(10).into_bytes(), 3).await;
        assert_eq!(
            error_text(get(&url).await, 4).await,
            "éééé… (20 bytes in all)"
        );
        let url = serve(500, vec![b'x'; ERROR_BODY_LIMIT + 1], 8192).await;
        assert_eq!(
            error_text(get(&url).await, 10).await,
            format!("(response body larger than {ERROR_BODY_LIMIT} bytes)")
        );
    }
}
