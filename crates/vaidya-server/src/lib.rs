//! Vaidya's top crate: the HTTP application (FHIR REST API, health, metrics) and the `vaidya`
//! command line. Only this crate knows HTTP; it wires the lower crates together.

pub mod alerts;
pub mod app;
pub mod audit;
pub mod backup;
pub mod auth;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod demo;
pub mod error;
pub mod fhir;
pub mod guard;
pub mod import;
pub mod node;
pub mod numbering;
pub mod print;
pub mod sms;
pub mod web;
