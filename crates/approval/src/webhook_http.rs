//! One HTTP/1.1 POST to an approval webhook, with the request headers spelled exactly as
//! io.finnet's Virtual Signer spells them (`VS-Nonce`, `Accept-Signature`, `Content-Type`).
//!
//! HTTP header names are case-insensitive, but handlers written to io.finnet's samples look
//! them up by exact name in a map their platform builds from the wire (the JavaScript sample
//! reads `event.headers['VS-Nonce']`). Rust's HTTP stack (`http`, `hyper`, `reqwest`) always
//! writes names in lower case (or title case: `Vs-Nonce`), so the request head is written
//! here, byte for byte; the reply is parsed by `httparse` (the parser `hyper` uses), with
//! `Content-Length`, chunked or read-to-close bodies, and bounded sizes.
//!
//! The connection is direct (TCP, and TLS by rustls with the platform's roots for
//! `https://`); `HTTP(S)_PROXY` is not used. One request per connection (`Connection:
//! close`); redirects are not followed. The caller bounds the whole exchange in time.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use url::{Host, Url};

/// The largest reply head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header lines accepted in a reply.
const MAX_HEADERS: usize = 64;

/// A reply: status, headers (names in lower case) and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The first header of that name (case-insensitive), if it is text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// The server could not be reached (name resolution or TCP connection).
    Connect(String),
    /// The connection broke before a whole reply came (asking again may work).
    Interrupted(String),
    /// A reply or a peer that cannot be trusted: a certificate that does not verify, a
    /// malformed or oversized reply, a request that cannot be written.
    Other(String),
}

/// The TLS settings for `https://` webhooks: the platform's roots, ring, HTTP/1.1.
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| format!("cannot load the platform's TLS roots: {e}"))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// POSTs `body` to `url` with `headers` (name, value) written exactly as given, and reads
/// a reply of at most `max_body` bytes.
pub(crate) async fn post(
    tls: &Arc<rustls::ClientConfig>,
    url: &Url,
    headers: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
) -> Result<Reply, ExchangeError> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ExchangeError::Other(format!("no port for scheme {}", url.scheme())))?;
    let host = url
        .host()
        .ok_or_else(|| ExchangeError::Other("the URL has no host".into()))?;
    let tcp = match &host {
        Host::Domain(d) => TcpStream::connect((*d, port)).await,
        Host::Ipv4(ip) => TcpStream::connect((*ip, port)).await,
        Host::Ipv6(ip) => TcpStream::connect((*ip, port)).await,
    }
    .map_err(|e| ExchangeError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let head = request_head(url, headers, body.len())?;
    match url.scheme() {
        "http" => exchange(tcp, &head, body, max_body).await,
        "https" => {
            let name = match host {
                Host::Domain(d) => rustls::pki_types::ServerName::try_from(d.to_owned())
                    .map_err(|e| ExchangeError::Other(format!("bad host name: {e}")))?,
                Host::Ipv4(ip) => rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                Host::Ipv6(ip) => rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
            };
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                // A certificate that does not verify comes as InvalidData: not to be retried.
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => ExchangeError::Other(format!("TLS: {e}")),
                    _ => ExchangeError::Interrupted(format!("TLS: {e}")),
                })?;
            exchange(stream, &head, body, max_body).await
        }
        other => Err(ExchangeError::Other(format!(
            "scheme {other} is not http or https"
        ))),
    }
}

/// The request line and headers, ending with the empty line.
fn request_head(url: &Url, headers: &[(&str, &str)], body_len: usize) -> Result<Vec<u8>, ExchangeError> {
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    let mut head = format!("POST {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        // Names and values are made by vsigner (digests, signatures, numbers); a line break
        // would end the header: never written.
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(ExchangeError::Other(format!("header {name:?} has a line break")));
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {body_len}\r\nUser-Agent: vsigner/{}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    ));
    Ok(head.into_bytes())
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &[u8],
    body: &[u8],
    max_body: usize,
) -> Result<Reply, ExchangeError> {
    let io = |what: &str, e: std::io::Error| ExchangeError::Interrupted(format!("{what}: {e}"));
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head);
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .await
        .map_err(|e| io("sending the request", e))?;
    stream.flush().await.map_err(|e| io("sending the request", e))?;

    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    // Interim (1xx) replies are skipped; the final one is read.
    loop {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or_default();
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect::<Vec<_>>();
                    break (status, headers, len);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD_BYTES {
                        return Err(ExchangeError::Other(format!(
                            "the reply's head is larger than {MAX_HEAD_BYTES} bytes"
                        )));
                    }
                    if read_more(&mut stream, &mut buf)
                        .await
                        .map_err(|e| io("reading the reply", e))?
                        == 0
                    {
                        return Err(ExchangeError::Interrupted(
                            "the connection closed before a reply".into(),
                        ));
                    }
                }
                Err(e) => return Err(ExchangeError::Other(format!("malformed reply: {e}"))),
            }
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            continue;
        }
        let reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = reply
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked"));
        let body = if chunked {
            read_chunked(&mut stream, buf, max_body).await?
        } else if let Some(len) = reply.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| ExchangeError::Other(format!("bad Content-Length {len:?}")))?;
            if len > max_body {
                return Err(too_large(max_body));
            }
            while buf.len() < len {
                if read_more(&mut stream, &mut buf)
                    .await
                    .map_err(|e| io("reading the reply", e))?
                    == 0
                {
                    return Err(ExchangeError::Interrupted(
                        "the reply ended before its Content-Length".into(),
                    ));
                }
            }
            buf.truncate(len);
            buf
        } else {
            // No length: the body runs to the end of the connection.
            loop {
                if buf.len() > max_body {
                    return Err(too_large(max_body));
                }
                if read_more(&mut stream, &mut buf)
                    .await
                    .map_err(|e| io("reading the reply", e))?
                    == 0
                {
                    break buf;
                }
            }
        };
        return Ok(Reply { body, ..reply });
    }
}

fn too_large(max: usize) -> ExchangeError {
    ExchangeError::Other(format!("the reply is larger than {max} bytes"))
}

/// Reads what is available onto `buf`; returns how many bytes (0 at the end). A TLS peer
/// that closes without close_notify is an error (the reply may have been cut).
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Decodes a chunked body; `buf` holds what was read after the head.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, ExchangeError> {
    let io = |e: std::io::Error| ExchangeError::Interrupted(format!("reading the reply: {e}"));
    let mut body = Vec::new();
    loop {
        let (start, size) = loop {
            match httparse::parse_chunk_size(&buf) {
                Ok(httparse::Status::Complete((start, size))) => break (start, size),
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD_BYTES {
                        return Err(ExchangeError::Other("a chunk size line is too long".into()));
                    }
                    if read_more(stream, &mut buf).await.map_err(io)? == 0 {
                        return Err(ExchangeError::Interrupted(
                            "the reply ended inside a chunk".into(),
                        ));
                    }
                }
                Err(_) => return Err(ExchangeError::Other("malformed chunked reply".into())),
            }
        };
        let size = usize::try_from(size).map_err(|_| too_large(max_body))?;
        if body.len().saturating_add(size) > max_body {
            return Err(too_large(max_body));
        }
        // The chunk and its CRLF (or, for the last chunk, the end of the trailers).
        if size == 0 {
            return Ok(body);
        }
        while buf.len() < start + size + 2 {
            if read_more(stream, &mut buf).await.map_err(io)? == 0 {
                return Err(ExchangeError::Interrupted(
                    "the reply ended inside a chunk".into(),
                ));
            }
        }
        body.extend_from_slice(&buf[start..start + size]);
        if &buf[start + size..start + size + 2] != b"\r\n" {
            return Err(ExchangeError::Other("malformed chunked reply".into()));
        }
        buf.drain(..start + size + 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_spells_names_as_given() {
        let url = Url::parse("http://127.0.0.1:8080/my-api/transaction-approval?code=x").unwrap();
        let head = request_head(
            &url,
            &[("VS-Nonce", "42"), ("Content-Type", "application/json")],
            7,
        )
        .unwrap();
        let expected = format!(
            "POST /my-api/transaction-approval?code=x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
             VS-Nonce: 42\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\
             User-Agent: vsigner/{}\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(head).unwrap(), expected);
        // A line break in a value would start a header of its own: refused.
        assert!(matches!(
            request_head(&url, &[("VS-Nonce", "1\r\nX-Approved: yes")], 0),
            Err(ExchangeError::Other(_))
        ));
    }

    /// Serves `reply` once on 127.0.0.1 after reading a request head and `body_len` bytes.
    async fn serve_once(reply: &'static [u8], body_len: usize) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < body_len {
                let mut b = [0u8; 1024];
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
            s.write_all(reply).await.unwrap();
            s.shutdown().await.unwrap();
        });
        url
    }

    #[tokio::test]
    async fn replies_of_each_framing_are_read() {
        let tls = tls_config().unwrap();
        for (reply, status, body) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"[..], 200, &b"hello"[..]),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
                200,
                b"hello",
            ),
            (b"HTTP/1.1 503 Busy\r\nDigest: x\r\n\r\nhello", 503, b"hello"),
        ] {
            let url = serve_once(reply, 2).await;
            let r = post(&tls, &url, &[("VS-Nonce", "1")], b"{}", 1024).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (status, body));
        }
    }

    #[tokio::test]
    async fn oversized_and_malformed_replies_are_refused() {
        let tls = tls_config().unwrap();
        let url = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", 0).await;
        let e = post(&tls, &url, &[], b"", 1024).await.unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Other(m) if m.contains("larger than 1024")),
            "{e:?}"
        );
        let url = serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n801\r\n", 0).await;
        let e = post(&tls, &url, &[], b"", 1024).await.unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Other(m) if m.contains("larger than 1024")),
            "{e:?}"
        );
        let url = serve_once(b"NOT HTTP\r\n\r\n", 0).await;
        let e = post(&tls, &url, &[], b"", 1024).await.unwrap_err();
        assert!(
            matches!(&e, ExchangeError::Other(m) if m.contains("malformed")),
            "{e:?}"
        );
        // Nobody listening: a connection error (retried by the caller).
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", closed.local_addr().unwrap())).unwrap();
        drop(closed);
        assert!(matches!(
            post(&tls, &url, &[], b"", 1024).await,
            Err(ExchangeError::Connect(_))
        ));
    }
}
