//! iochub: the data-integration hub of a local Intelligent Operations Centre.
//!
//! See ARCHITECTURE.md for the map. Data flows connector → normalize → storage, and out
//! through query (SQL over HTTP and the PostgreSQL protocol, `pg`) and the feed (changes pushed to subscribers).

pub mod calendar;
pub mod config;
pub mod console;
pub mod demo;
pub mod feed;
pub mod functions;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod local_time;
pub mod metrics;
pub mod normalize;
pub mod overdue;
pub mod pg;
pub mod query;
pub mod report;
pub mod schedule;
pub mod sharing;
pub mod state;
pub mod storage;
pub mod transform;
pub mod units;
pub mod vi_text;

pub use hub::Hub;
