//! kafka-consumer: Kafka source topics into the Summit event mesh (DESIGN §1, §3, §4, §8).
//!
//! `config` reads and checks the configuration (routes are resolved by the ingest core's
//! `RouteTable`), `rebalance` drains and commits revoked partitions, and
//! `pipeline` runs consume → decode → dq → route with ordered offset commits, and
//! `exactly_once` runs the same routing inside Kafka transactions (`delivery.mode: exactly_once`).
//! `service` wires both modes to the metrics and admin port (the core's observers) and data-quality
//! tickets; effectively_once puts lineage on the commit path (`lineage`), exactly_once writes each
//! epoch's lineage inside its transaction.

pub mod assignment;
pub mod config;
pub mod exactly_once;
pub mod lineage;
pub mod pipeline;
pub mod rebalance;
pub mod service;
pub mod source;
