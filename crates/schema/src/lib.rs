//! (being written; see the crate README once it lands)
