//! W3C Trace Context (`traceparent` version 00): continued from a source record when present,
//! otherwise started here. Only the fields the mesh carries are modelled.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent `{input}`: {reason}")]
pub struct TraceParseError {
    pub input: String,
    pub reason: &'static str,
}

impl TraceContext {
    /// A new sampled root context with random ids.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_random(),
            parent_id: nonzero_random(),
            flags: 0x01,
        }
    }

    /// The same trace with a new span id: what this stage writes on its outputs.
    pub fn child(&self) -> Self {
        Self {
            parent_id: nonzero_random(),
            ..*self
        }
    }

    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// Parses a `traceparent` header. Per the spec, a future version's extra fields are
    /// ignored, but version `ff`, all-zero ids and malformed hex are refused.
    pub fn parse(input: &str) -> Result<Self, TraceParseError> {
        let err = |reason| TraceParseError {
            input: input.chars().take(80).collect(),
            reason,
        };
        let mut parts = input.trim().split('-');
        let version = parts.next().ok_or(err("empty"))?;
        let trace = parts.next().ok_or(err("missing trace-id"))?;
        let parent = parts.next().ok_or(err("missing parent-id"))?;
        let flags = parts.next().ok_or(err("missing trace-flags"))?;
        if version.len() != 2 || !is_lower_hex(version) {
            return Err(err("version must be two lower-case hex digits"));
        }
        if version == "ff" {
            return Err(err("version ff is invalid"));
        }
        if version == "00" && parts.next().is_some() {
            return Err(err("version 00 has exactly four fields"));
        }
        let trace_id: [u8; 16] = decode_hex(trace).ok_or(err("trace-id must be 32 hex digits"))?;
        let parent_id: [u8; 8] =
            decode_hex(parent).ok_or(err("parent-id must be 16 hex digits"))?;
        let [flags]: [u8; 1] = decode_hex(flags).ok_or(err("trace-flags must be 2 hex digits"))?;
        if trace_id == [0; 16] {
            return Err(err("trace-id is all zeros"));
        }
        if parent_id == [0; 8] {
            return Err(err("parent-id is all zeros"));
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.parent_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !is_lower_hex(s) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        // One draw from the thread-local generator fills the array (ids are at most 16 bytes).
        let mut candidate = [0u8; N];
        rand::fill(&mut candidate[..]);
        if candidate != [0; N] {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let ctx = TraceContext::parse(SAMPLE).expect("valid");
        assert_eq!(ctx.to_string(), SAMPLE);
        assert!(ctx.is_sampled());
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn child_keeps_trace_and_changes_span() {
        let ctx = TraceContext::parse(SAMPLE).expect("valid");
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.parent_id, ctx.parent_id);
        assert_eq!(child.flags, ctx.flags);
    }

    #[test]
    fn future_versions_may_carry_more_fields() {
        let ctx =
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .expect("a future version is read as far as 00 goes");
        assert!(ctx.is_sampled());
    }

    #[test]
    fn refuses_malformed_headers() {
        for (input, reason) in [
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff is invalid",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent-id is all zeros",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace-id must be 32 hex digits",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "missing trace-flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "version 00 has exactly four fields",
            ),
        ] {
            assert_eq!(
                TraceContext::parse(input).expect_err(input).reason,
                reason,
                "{input}"
            );
        }
    }

    #[test]
    fn new_roots_are_valid_and_round_trip() {
        let ctx = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&ctx.to_string()), Ok(ctx));
    }
}
