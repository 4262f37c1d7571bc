//! kafka-consumer: Kafka source topics into the Summit event mesh (DESIGN §1, §3, §4, §8).
//!
//! `config` reads and checks the configuration, `routing` resolves a source topic to its
//! dataset, decoder and rule set, `rebalance` drains and commits revoked partitions, and
//! `pipeline` runs consume → decode → dq → route with ordered offset commits, and
//! `exactly_once` runs the same routing inside Kafka transactions (`delivery.mode: exactly_once`).
//! `service` wires effectively_once to its metrics and admin port (`observers`), lineage on the
//! commit path (`lineage`) and data-quality tickets.

pub mod config;
pub mod exactly_once;
pub mod lineage;
pub mod observers;
pub mod pipeline;
pub mod rebalance;
pub mod routing;
pub mod service;
