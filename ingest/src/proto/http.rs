//! HTTP/1.x message heads (request line or status line plus headers), parsed with `httparse`.

/// Headers kept from a message head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpHeaders {
    /// `Host`
    pub host: Option<String>,
    /// `X-Request-ID`
    pub x_request_id: Option<String>,
    /// Trace id from `traceparent`, `X-B3-TraceId` or `uber-trace-id`.
    pub trace_id: Option<String>,
    /// Span id of the sender from the same headers.
    pub span_id: Option<String>,
    /// Parent span id where the header carries one.
    pub parent_span_id: Option<String>,
    /// `Content-Length`
    pub content_length: Option<u64>,
    /// `Transfer-Encoding: chunked`
    pub chunked: bool,
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// A request line.
    Request {
        /// Method, e.g. GET.
        method: String,
        /// Request target, e.g. /a?b=1.
        path: String,
    },
    /// A status line.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase (empty below 400).
        reason: String,
    },
}

/// A parsed message head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHead {
    /// Request or status line.
    pub start: StartLine,
    /// Minor version: 0 or 1 (HTTP/1.x).
    pub minor_version: u8,
    /// Headers that matter for tracing and framing.
    pub headers: HttpHeaders,
    /// Bytes of the head, when it ended inside the bytes seen.
    pub head_len: Option<usize>,
}

impl HttpHead {
    /// Bytes of the body that follows the head, when framing says so; `None` means unknown
    /// (chunked, or read until close). `request_method` is the method of the request a
    /// response answers (HEAD responses have no body).
    pub fn body_len(&self, request_method: Option<&str>) -> Option<u64> {
        match &self.start {
            StartLine::Request { .. } => {
                if self.headers.chunked {
                    None
                } else {
                    Some(self.headers.content_length.unwrap_or(0))
                }
            }
            StartLine::Response { code, .. } => {
                if request_method == Some("HEAD") || *code < 200 || *code == 204 || *code == 304 {
                    Some(0)
                } else if self.headers.chunked {
                    None
                } else {
                    self.headers.content_length
                }
            }
        }
    }

    /// Whole message length (head + body) when known.
    pub fn message_len(&self, request_method: Option<&str>) -> Option<u64> {
        (self.head_len? as u64).checked_add(self.body_len(request_method)?)
    }

    /// "1.0" or "1.1".
    pub fn version(&self) -> &'static str {
        if self.minor_version == 0 {
            "1.0"
        } else {
            "1.1"
        }
    }
}

/// Headers parsed per head; a head with more is not recognised (counted as not HTTP).
const MAX_HEADERS: usize = 40;

/// Parses an HTTP/1.x message head at the start of `buf`; `None` when it is not HTTP/1.x.
/// `truncated` says the capture cut the bytes, so a head that does not end in `buf` is still
/// accepted once its start line is whole.
pub fn parse_head(buf: &[u8], truncated: bool) -> Option<HttpHead> {
    if buf.starts_with(b"HTTP/") {
        parse_response(buf, truncated)
    } else {
        parse_request(buf, truncated)
    }
}

fn parse_request(buf: &[u8], truncated: bool) -> Option<HttpHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = head_len(req.parse(buf), buf, truncated)?;
    let (Some(method), Some(path), Some(v)) = (req.method, req.path, req.version) else {
        return None;
    };
    Some(HttpHead {
        start: StartLine::Request {
            method: method.to_string(),
            path: path.to_string(),
        },
        minor_version: v,
        headers: collect_headers(req.headers),
        head_len,
    })
}

fn parse_response(buf: &[u8], truncated: bool) -> Option<HttpHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = head_len(resp.parse(buf), buf, truncated)?;
    let (Some(code), Some(v)) = (resp.code, resp.version) else {
        return None;
    };
    Some(HttpHead {
        start: StartLine::Response {
            code,
            // Kept for error responses only (it becomes response_exception): saves an
            // allocation per ordinary response.
            reason: if code >= 400 {
                resp.reason.unwrap_or_default().to_string()
            } else {
                String::new()
            },
        },
        minor_version: v,
        headers: collect_headers(resp.headers),
        head_len,
    })
}

/// The head's length from httparse's verdict: `Some(Some(n))` complete, `Some(None)` cut off
/// but acceptable (truncated capture, or the start line ended), `None` not HTTP.
fn head_len(status: httparse::Result<usize>, buf: &[u8], truncated: bool) -> Option<Option<usize>> {
    match status {
        Ok(httparse::Status::Complete(n)) => Some(Some(n)),
        Ok(httparse::Status::Partial) if truncated || line_complete(buf) => Some(None),
        _ => None,
    }
}

/// A head split across syscalls: accept it once the start line has ended.
fn line_complete(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w == b"\r\n")
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> HttpHeaders {
    let mut h = HttpHeaders::default();
    for hdr in raw.iter().take_while(|h| !h.name.is_empty()) {
        let name = hdr.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        // Dispatch on length first: most headers match nothing and cost one comparison.
        let slot = match name.len() {
            4 if is("host") => &mut h.host,
            11 if is("x-b3-spanid") => &mut h.span_id,
            12 if is("x-request-id") => &mut h.x_request_id,
            12 if is("x-b3-traceid") => &mut h.trace_id,
            17 if is("x-b3-parentspanid") => &mut h.parent_span_id,
            14 if is("content-length") => {
                h.content_length = text(hdr.value).parse().ok();
                continue;
            }
            17 if is("transfer-encoding") => {
                h.chunked = text(hdr.value).to_ascii_lowercase().contains("chunked");
                continue;
            }
            11 if is("traceparent") => {
                // version-traceid-parentid-flags: parentid is the sender's span.
                let v = text(hdr.value);
                let mut parts = v.split('-');
                if let (Some(_), Some(t), Some(s)) = (parts.next(), parts.next(), parts.next()) {
                    h.trace_id = Some(t.to_string());
                    h.span_id = Some(s.to_string());
                }
                continue;
            }
            13 if is("uber-trace-id") => {
                // trace:span:parent:flags
                let v = text(hdr.value);
                let mut parts = v.split(':');
                h.trace_id = parts.next().map(str::to_string);
                h.span_id = parts.next().map(str::to_string);
                h.parent_span_id = parts.next().filter(|p| *p != "0").map(str::to_string);
                continue;
            }
            _ => continue,
        };
        *slot = Some(text(hdr.value).to_string());
    }
    h
}

/// A header value as text (invalid UTF-8 is replaced), trimmed.
fn text(v: &[u8]) -> std::borrow::Cow<'_, str> {
    match String::from_utf8_lossy(v) {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(buf: &[u8]) -> HttpHead {
        parse_head(buf, false)
            .unwrap_or_else(|| panic!("not http: {:?}", String::from_utf8_lossy(buf)))
    }

    #[test]
    fn request_with_trace_headers() {
        let h = head(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: r1\r\n\
              traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
        );
        assert_eq!(
            h.start,
            StartLine::Request {
                method: "GET".into(),
                path: "/a?b=1".into()
            }
        );
        assert_eq!(h.headers.host.as_deref(), Some("x"));
        assert_eq!(h.headers.x_request_id.as_deref(), Some("r1"));
        assert_eq!(
            h.headers.trace_id.as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(h.headers.span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(h.message_len(None), Some(h.head_len.unwrap() as u64));
    }

    #[test]
    fn response_framing() {
        let h = head(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(h.body_len(Some("GET")), Some(5));
        assert_eq!(h.body_len(Some("HEAD")), Some(0));
        assert_eq!(h.version(), "1.0");
        let c = head(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(c.body_len(Some("GET")), None);
    }

    /// A Content-Length near u64::MAX once overflowed the message length (a panic in debug).
    #[test]
    fn huge_content_length_does_not_overflow() {
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(h.message_len(Some("GET")), None);
    }

    #[test]
    fn garbage_and_other_protocols_are_not_http() {
        for buf in [
            &b"\x00\x01\x02\x03garbage"[..],
            b"*1\r\n$4\r\nPING\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"",
            b"GET",
        ] {
            assert_eq!(parse_head(buf, false), None, "{buf:?}");
        }
    }

    #[test]
    fn truncated_head_keeps_start_line() {
        let h = parse_head(b"POST /upload HTTP/1.1\r\nHost: a\r\nX-Lo", true).expect("head");
        assert_eq!(h.head_len, None);
        assert_eq!(h.headers.host.as_deref(), Some("a"));
    }
}
