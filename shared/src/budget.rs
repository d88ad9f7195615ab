//! The worst-case time of every endpoint, from the configuration.
//!
//! Every store call is bounded by its own timeout (a Redis command by `REDIS_COMMAND_TIMEOUT_MS`,
//! a reconnect by `REDIS_CONNECT_TIMEOUT_MS`, a DynamoDB call, retries included, by
//! `DYNAMODB_TIMEOUT_MS`, a JWKS fetch by [`crate::auth::JWKS_TIMEOUT`]) and each operation makes
//! a bounded number of them, counted here step by step for the slowest store mode (Redis in front
//! of DynamoDB). A revocation must reach Redis or bump the epoch before Lambda can stop the
//! function, so every figure must stay below the function's `Timeout` with margin: a test reads
//! `template.yaml` and holds each at least [`TIMEOUT_MARGIN`] below it. `docs/both-stores.md`
//! has the table for the defaults.

use crate::config::Config;
use crate::handlers::Endpoint;
use std::time::Duration;

/// What every function's `Timeout` must leave beyond the worst case: a cold start's remaining
/// init, the response, and a clock that is not exact.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// logout-all's whole record step (one `Query`, then batched deletes with retries and back-off)
/// gets this many `DYNAMODB_TIMEOUT_MS`, however many items the user's partition holds.
pub const DELETE_USER_BUDGET_CALLS: u32 = 2;

/// An admin's global figures stop walking the store after this long and say they are partial.
pub const GLOBAL_STATS_BUDGET: Duration = Duration::from_secs(2);

/// One endpoint's worst case, and how it is made up.
#[derive(Debug, Clone)]
pub struct WorstCase {
    pub endpoint: Endpoint,
    pub time: Duration,
    /// The steps, in the order the request takes them.
    pub steps: &'static str,
}

/// Every endpoint's worst case under `config`.
pub fn worst_cases(config: &Config) -> Vec<WorstCase> {
    let d = config.dynamodb_timeout;
    // The first Redis call of a request may have to reconnect first; later ones cannot (a failure
    // makes the rest of the request skip Redis).
    let redis_first = config.redis_connect_timeout + config.redis_command_timeout;
    let redis = config.redis_command_timeout;
    let jwt = crate::auth::JWKS_TIMEOUT;
    // A session token: Redis HGET, epoch reread, record GetItem, checked repair.
    let token = redis_first + d * 2 + redis;
    let any = token.max(jwt);
    let delete_user = d * DELETE_USER_BUDGET_CALLS;
    use Endpoint::*;
    let case = |endpoint, time, steps| WorstCase {
        endpoint,
        time,
        steps,
    };
    vec![
        case(
            SessionCreate,
            jwt + d * 4 + redis_first,
            "JWKS fetch; epoch read; PutItem beside the cap's Query; eviction deletes; Redis write; \
             epoch bump if Redis missed an eviction",
        ),
        case(
            SessionValidate,
            token,
            "Redis HGET; epoch reread; GetItem; Redis repair",
        ),
        case(
            SessionRefresh,
            d * 2 + redis_first,
            "epoch read; conditional UpdateItem; Redis write",
        ),
        case(
            SessionLogout,
            d * 3 + redis_first,
            "DeleteItem; GetItem if its answer was lost; Redis tombstone; epoch bump if Redis \
             missed it",
        ),
        case(
            SessionLogoutAll,
            any + delete_user + redis_first + d,
            "session token or JWT; Query and batched deletes under one budget; Redis marker; \
             epoch bump if Redis missed it",
        ),
        case(
            SessionStats,
            any + d + GLOBAL_STATS_BUDGET,
            "session token or JWT; Query; the global walk for admins",
        ),
        case(
            CacheGet,
            any + redis_first + d * 2,
            "session token or JWT; Redis GET; epoch reread; GetItem",
        ),
        case(
            CachePut,
            any + d * 3 + redis_first,
            "session token or JWT; epoch read; PutItem; Redis SET; epoch bump if Redis missed it",
        ),
    ]
}
