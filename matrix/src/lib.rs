//! ktstr's matrix engine: spec -> cells -> parallel run -> result store -> report, and the
//! session that ties them to one output directory.
//! It knows nothing about VMs: cells are run through the [`engine::CellRunner`] trait that the
//! `ktstr` crate implements, so the engine is testable with a mock runner.

pub mod bisect;
pub mod engine;
pub mod html;
pub mod merge;
pub mod plan;
pub mod render;
pub mod report;
pub mod result;
pub mod session;
pub mod shard;
pub mod spec;
pub mod stats;
pub mod store;
