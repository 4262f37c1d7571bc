//! The registry wire format: a value framed as magic byte `0x00`, the schema id as a big-endian
//! u32, then the body; or a bare body whose schema travels in the `__value_schema_id` header.

use crate::{Result, SchemaError};

pub const MAGIC_BYTE: u8 = 0;
/// Header magic of Confluent's GUID form (`0x01` + 16-byte GUID).
pub const GUID_MAGIC_BYTE: u8 = 1;
pub const VALUE_SCHEMA_ID_HEADER: &str = "__value_schema_id";
pub const KEY_SCHEMA_ID_HEADER: &str = "__key_schema_id";
const FRAME_HEADER_LEN: usize = 5;

/// How a value names its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaReference {
    Id(u32),
    /// Confluent SR 8's global GUID, as 16 raw bytes.
    Guid([u8; 16]),
}

/// Prefixes `body` with the magic byte and `id`.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    framed.push(MAGIC_BYTE);
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(body);
    framed
}

/// Splits a framed value into its schema id and body.
pub fn unframe(value: &[u8]) -> Result<(u32, &[u8])> {
    let Some((header, body)) = value.split_at_checked(FRAME_HEADER_LEN) else {
        return Err(SchemaError::BadFraming {
            reason: format!(
                "{} bytes is shorter than the 5-byte frame header",
                value.len()
            ),
        });
    };
    if header[0] != MAGIC_BYTE {
        return Err(SchemaError::BadFraming {
            reason: format!("magic byte is {:#04x}, expected 0x00", header[0]),
        });
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, body))
}

/// Reads a `__value_schema_id` header: `0x01` + GUID, `0x00` + id, or a bare 4-byte id.
pub fn parse_schema_id_header(header: &[u8]) -> Result<SchemaReference> {
    match header {
        [GUID_MAGIC_BYTE, guid @ ..] if guid.len() == 16 => {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(guid);
            Ok(SchemaReference::Guid(bytes))
        }
        [MAGIC_BYTE, a, b, c, d] | [a, b, c, d] => {
            Ok(SchemaReference::Id(u32::from_be_bytes([*a, *b, *c, *d])))
        }
        other => Err(SchemaError::BadFraming {
            reason: format!(
                "schema id header of {} bytes is neither 0x01+GUID (17), 0x00+id (5) nor id (4)",
                other.len()
            ),
        }),
    }
}

/// The `0x01` + GUID header value for `guid`.
pub fn guid_header(guid: [u8; 16]) -> Vec<u8> {
    let mut header = Vec::with_capacity(17);
    header.push(GUID_MAGIC_BYTE);
    header.extend_from_slice(&guid);
    header
}

/// Formats a GUID the way the registry API spells it (`8-4-4-4-12` lowercase hex).
pub fn format_guid(guid: &[u8; 16]) -> String {
    let hex = hex::encode(guid);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips() {
        let framed = frame(0x0102_0304, b"body");
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(unframe(&framed).ok(), Some((0x0102_0304, &b"body"[..])));
    }

    #[test]
    fn bad_frames_are_record_level_errors() {
        for bad in [&b""[..], &[0, 0, 0][..], &[7, 0, 0, 0, 1, 9][..]] {
            let error = unframe(bad).expect_err("bad frame");
            assert!(error.is_record_level(), "{error}");
        }
    }

    #[test]
    fn header_forms() {
        assert_eq!(
            parse_schema_id_header(&[0, 0, 0, 0, 9]).ok(),
            Some(SchemaReference::Id(9))
        );
        assert_eq!(
            parse_schema_id_header(&[0, 0, 1, 0]).ok(),
            Some(SchemaReference::Id(256))
        );
        let guid = [7u8; 16];
        assert_eq!(
            parse_schema_id_header(&guid_header(guid)).ok(),
            Some(SchemaReference::Guid(guid))
        );
        assert!(parse_schema_id_header(&[1, 2]).is_err());
        assert_eq!(
            format_guid(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }
}
