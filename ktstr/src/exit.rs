//! Process exit codes, in one place.

/// Everything ran and passed.
pub const OK: i32 = 0;
/// A cell failed, crashed, timed out, or a regression was flagged.
pub const FAILURE: i32 = 1;
/// Bad input: the command line, a spec, a missing file or tool. Nothing was booted.
pub const USAGE: i32 = 2;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;
