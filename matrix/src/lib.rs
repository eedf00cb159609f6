//! ktstr's matrix engine: spec -> cells -> parallel run -> result store -> report, and the
//! session that ties them to one output directory.
//! It knows nothing about VMs: cells are run through the [`engine::CellRunner`] trait that the
//! `ktstr` crate implements, so the engine is testable with a mock runner.

pub mod bisect;
pub mod budget;
pub mod changepoint;
pub mod engine;
pub mod evidence;
pub mod history;
pub mod history_render;
pub mod html;
pub mod html_cells;
pub mod html_grid;
pub mod html_plot;
pub mod labels;
pub mod markdown;
pub mod merge;
pub mod plan;
pub mod provenance;
pub mod render;
pub mod report;
pub mod result;
pub mod session;
pub mod shard;
pub mod spec;
pub mod stats;
pub mod store;
pub mod subtests;
pub mod summary;
pub mod terminal;
