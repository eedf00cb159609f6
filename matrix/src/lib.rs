//! ktstr's matrix engine: spec -> cells -> parallel run -> result store -> report; bisection.
//! It knows nothing about VMs: cells are run through the `runner::CellRunner` trait that the
//! `ktstr` crate implements, so the engine is testable with a mock runner.

pub mod result;
