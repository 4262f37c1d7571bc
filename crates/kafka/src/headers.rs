//! Between the mesh's [`RecordHeaders`] and librdkafka's header lists.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use summit_mesh::RecordHeaders;

/// librdkafka's copy of `headers`, in order, null values kept null.
pub fn owned_headers(headers: &RecordHeaders) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |out, (key, value)| out.insert(Header { key, value }),
    )
}

/// The mesh's copy of a Kafka message's headers.
pub fn record_headers(headers: &impl Headers) -> RecordHeaders {
    headers
        .iter()
        .map(|header| (header.key, header.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_null_values() {
        let mut headers = RecordHeaders::new();
        headers.put("a", "1");
        headers.push("n", None);
        headers.put("a", "2");
        let owned = owned_headers(&headers);
        assert_eq!(owned.count(), 3);
        assert_eq!(record_headers(&owned), headers);
    }
}
