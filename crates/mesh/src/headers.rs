//! Record headers as the mesh writes them, independent of any Kafka client.
//!
//! Every output carries ten or so headers and is built on the consuming task, so the type keeps
//! all keys and values in one byte buffer (two allocations per record, not two per header) and
//! a sink turns it into its client's own header type when it sends.

/// Where one header's key and value end in [`RecordHeaders::bytes`]; the key starts where the
/// previous header's value ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderEnd {
    key_end: u32,
    value_end: u32,
    /// A Kafka header may have a null value, which is not the same as an empty one.
    null: bool,
}

/// An ordered list of `(key, value)` headers; keys may repeat, as in Kafka.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordHeaders {
    bytes: Vec<u8>,
    ends: Vec<HeaderEnd>,
}

impl RecordHeaders {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `headers` entries of `bytes` key and value bytes in all.
    pub fn with_capacity(headers: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(headers),
        }
    }

    /// Appends a header. Sizes past 4 GiB cannot occur: a record that large is refused long
    /// before its headers are built, so the offsets saturate rather than fail.
    pub fn push(&mut self, key: &str, value: Option<&[u8]>) {
        self.bytes.extend_from_slice(key.as_bytes());
        let key_end = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        if let Some(value) = value {
            self.bytes.extend_from_slice(value);
        }
        let value_end = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.ends.push(HeaderEnd {
            key_end,
            value_end,
            null: value.is_none(),
        });
    }

    /// Appends a header with a UTF-8 value.
    pub fn put(&mut self, key: &str, value: &str) {
        self.push(key, Some(value.as_bytes()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Key and value bytes in all (what a broker counts towards the record size).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The headers in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |end| {
            let key_end = end.key_end as usize;
            let value_end = end.value_end as usize;
            // Keys were appended from `&str`s, so each slice is UTF-8.
            let key = std::str::from_utf8(&self.bytes[start..key_end]).unwrap_or_default();
            let value = (!end.null).then(|| &self.bytes[key_end..value_end]);
            start = value_end;
            (key, value)
        })
    }

    /// The value of the first header named `key` (`None` when absent or null).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value)
    }

    /// [`Self::get`] as text, when it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}

impl<'a> FromIterator<(&'a str, Option<&'a [u8]>)> for RecordHeaders {
    fn from_iter<I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>>(iter: I) -> Self {
        let mut headers = Self::new();
        for (key, value) in iter {
            headers.push(key, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_repeats_null_and_empty_values() {
        let mut headers = RecordHeaders::with_capacity(4, 32);
        headers.put("a", "1");
        headers.push("n", None);
        headers.push("e", Some(b""));
        headers.put("a", "2");
        let listed: Vec<_> = headers.iter().collect();
        assert_eq!(
            listed,
            vec![
                ("a", Some(&b"1"[..])),
                ("n", None),
                ("e", Some(&b""[..])),
                ("a", Some(&b"2"[..])),
            ]
        );
        assert_eq!(headers.get_str("a"), Some("1"), "first wins");
        assert_eq!(headers.get("n"), None);
        assert_eq!(headers.get("e"), Some(&b""[..]));
        assert_eq!(headers.len(), 4);
        assert_eq!(headers.byte_len(), 6);
        let copy: RecordHeaders = headers.iter().collect();
        assert_eq!(copy, headers);
    }
}
