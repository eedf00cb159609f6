//! Bisection: which candidate (commit or release) between a good and a bad one made a kernel or a
//! scheduler worse. [`search`] picks what to test next and says where it ended, honest about
//! skips; [`verdict`] classifies each tested candidate against the endpoints' samples with rank
//! tests and asks for more repeats while a verdict is unknown. Building and booting a candidate
//! is the caller's: each step is a small matrix run through a session.

pub mod search;
pub mod verdict;

pub use search::{Found, Mark, Search, SearchError};
pub use verdict::{
    Classification, Criterion, EndpointCheck, Verdict, Worse, check_endpoints, classify,
    classify_outcomes, next_repeats,
};
