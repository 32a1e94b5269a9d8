//! What outlives one run, in the state directory: the directory itself
//! (untrusted input: every open is guarded), the facts and failure streaks
//! kept per VM, and the results callers share under `--min-interval`.

pub mod facts;
pub mod remember;
pub mod shared;
pub mod statedir;
