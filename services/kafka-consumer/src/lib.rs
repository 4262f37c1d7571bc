//! kafka-consumer (work in progress).
