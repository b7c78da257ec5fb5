//! Integration tests: one test binary, so the heavy dependencies are linked once.

mod citizen_reports;
mod common;
mod computed;
mod config_check;
mod console;
mod console_e2e;
mod demo;
mod feed;
mod file_pipelines;
mod http_api;
mod http_source;
mod overdue;
mod postgres;
mod reports;
mod routing;
mod run_state;
mod samples;
mod scheduling;
mod sharing;
mod sql_source;
mod views;
