//! Replayable request bodies and body-aware HTTP retries.

mod budget;
mod future;
mod layer;
mod outcome;
mod peek;
mod policy;
mod replay;

pub use budget::{Budget, InvalidBudget};
pub use future::ResponseFuture;
pub use layer::{Retry, RetryLayer};
pub use outcome::{Attempt, PerTryTimeout, RetryError, RetryOutcome, RetryStop};
pub use peek::{PeekTrailers, PeekTrailersBody};
pub use policy::{
    DEFAULT_MAX_REQUEST_BYTES, Decision, GrpcCodes, Policy, RetryPolicy, is_retryable_error,
};
pub use replay::{ReplayBody, ReplayError};
