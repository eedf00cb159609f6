//! Process exit codes, in one place.

/// Everything ran and passed.
pub const OK: i32 = 0;
/// A cell failed, crashed, timed out, or a regression was flagged.
pub const FAILURE: i32 = 1;
/// Bad input: the command line, a spec, a missing file or tool. Nothing was booted.
pub const USAGE: i32 = 2;
/// `ktstr bisect`: the endpoints do not differ (by the test and the threshold, or on outcomes the
/// bad endpoint passes). A culprit (or a range around skipped commits) exits [`OK`].
pub const BISECT_NO_REGRESSION: i32 = 3;
/// `ktstr bisect`: no answer: an endpoint cannot be tested, the good endpoint fails too, or the
/// culprit was not confirmed against its parent.
pub const BISECT_INCONCLUSIVE: i32 = 4;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;
