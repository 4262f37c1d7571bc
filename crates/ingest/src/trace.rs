//! A record's W3C trace context as its source carried it (DESIGN §5). A present but malformed
//! `traceparent`, or a non-UTF-8 `tracestate`, is the record's fault: it is dead-lettered as
//! `bad_header` with this error as its reason.

use summit_envelope::{TraceContext, TraceParseError, headers};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("{header} header is not UTF-8")]
    NotUtf8 { header: &'static str },
    #[error(transparent)]
    Invalid(#[from] TraceParseError),
}

/// The source's trace context, if it sent one, and its `tracestate` (kept only with a parent).
pub fn parse_trace<'a>(
    traceparent: Option<&[u8]>,
    tracestate: Option<&'a [u8]>,
) -> Result<(Option<TraceContext>, Option<&'a str>), TraceError> {
    let state = tracestate
        .map(|bytes| utf8(bytes, headers::TRACESTATE))
        .transpose()?;
    let Some(bytes) = traceparent else {
        return Ok((None, None));
    };
    let parent = TraceContext::parse(utf8(bytes, headers::TRACEPARENT)?)?;
    Ok((Some(parent), state))
}

fn utf8<'a>(bytes: &'a [u8], header: &'static str) -> Result<&'a str, TraceError> {
    std::str::from_utf8(bytes).map_err(|_| TraceError::NotUtf8 { header })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_continued_started_or_refused() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (found, state) =
            parse_trace(Some(parent.as_bytes()), Some(b"k=v")).expect("valid parent");
        let found = found.expect("parent kept");
        assert_eq!(found.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(found.span_id_hex(), "b7ad6b7169203331");
        assert_eq!(state, Some("k=v"));
        let (none, state) = parse_trace(None, None).expect("no header");
        assert!(none.is_none());
        assert_eq!(state, None);
        assert!(matches!(
            parse_trace(Some(b"00-zz"), None),
            Err(TraceError::Invalid(_))
        ));
        assert_eq!(
            parse_trace(Some(&[0xff, 0xfe]), None),
            Err(TraceError::NotUtf8 {
                header: "traceparent"
            })
        );
        assert_eq!(
            parse_trace(None, Some(&[0xff])),
            Err(TraceError::NotUtf8 {
                header: "tracestate"
            })
        );
    }
}
