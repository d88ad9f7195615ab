//! Step by step, each known race of Redis in front of DynamoDB, forced on every run: a request is
//! held at a pause point of the protocol (`shared::hooks`, compiled into tests only) while the
//! competing request runs, then released. Each test stands several containers (stores with their
//! own epoch cache and Redis state) over one redis-server and one table, and judges the outcome
//! by what every container answers afterwards and by what the record (DynamoDB) holds.

mod support;

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use shared::hooks;
use shared::session::{Lifetimes, Session, now_unix};
use shared::token::UserKey;
use shared::{SessionToken, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::stores::{Fleet, unique};

const LIFETIMES: Lifetimes = Lifetimes {
    session: 3600,
    remember_me: 2_592_000,
    max_lifetime: 7_776_000,
};

fn session_of(user: &str) -> (SessionToken, Session) {
    (
        SessionToken::mint(user),
        Session::new(user, false, None, LIFETIMES, now_unix()),
    )
}

/// Whether any of these containers still accepts the token, by validate or by refresh.
async fn accepted_anywhere(token: &SessionToken, containers: &[&Store]) -> Vec<String> {
    let mut accepted = Vec::new();
    for (i, store) in containers.iter().enumerate() {
        // Twice: the first read may repair Redis, the second is served by what it left.
        for round in 0..2 {
            if store.get(token, now_unix()).await.unwrap().is_some() {
                accepted.push(format!("container {i} validate (read {round})"));
            }
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_racing_logout_all_does_not_bring_the_session_back() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container().await);
    let user = unique("user");
    let (token, session) = session_of(&user);

    // A's create has written the record, and its Redis write (sent beside it) has not landed;
    // B's logout-all runs in between.
    let mut recorded = hooks::arm("tiered.create.recorded", &user);
    let mut caching = hooks::arm("tiered.create.caching", &user);
    let create = tokio::spawn({
        let (a, token, session) = (a.clone(), token.clone(), session.clone());
        async move { a.create(&token, &session).await }
    });
    recorded.reached().await;
    caching.reached().await;
    let revoked = b
        .delete_user(&UserKey::for_user(&user), now_unix())
        .await
        .unwrap();
    assert_eq!(revoked, 1, "logout-all saw the new session in the record");
    caching.release();
    recorded.release();
    create.await.unwrap().unwrap();

    assert_eq!(fleet.record().get(&token, now_unix()).await.unwrap(), None);
    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await,
        Vec::<String>::new(),
        "a session revoked by logout-all came back"
    );
    assert_eq!(b.refresh(&token, now_unix()).await.unwrap(), None);
}

/// The other order, which sending both writes together makes possible: A's Redis write lands,
/// then B's logout-all queries the record before A's record write lands. The logout-all did not
/// see the session, so it comes first in the only order the record allows: the session is live,
/// served from the record (B's marker keeps it out of Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_redis_write_lands_first_outlives_a_logout_all_that_missed_it() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container().await);
    let user = unique("user");
    let (token, session) = session_of(&user);

    let mut recording = hooks::arm("tiered.create.recording", &user);
    let mut cached = hooks::arm("tiered.create.cached", &user);
    let create = tokio::spawn({
        let (a, token, session) = (a.clone(), token.clone(), session.clone());
        async move { a.create(&token, &session).await }
    });
    recording.reached().await;
    cached.reached().await;
    let revoked = b
        .delete_user(&UserKey::for_user(&user), now_unix())
        .await
        .unwrap();
    assert_eq!(
        revoked, 0,
        "logout-all ran before the record held the session"
    );
    recording.release();
    cached.release();
    create.await.unwrap().unwrap();

    assert!(
        fleet
            .record()
            .get(&token, now_unix())
            .await
            .unwrap()
            .is_some()
    );
    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await.len(),
        6,
        "a session the record holds was refused"
    );
    // And the next logout-all ends it everywhere.
    b.delete_user(&UserKey::for_user(&user), now_unix())
        .await
        .unwrap();
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await,
        Vec::<String>::new()
    );
}

/// A create whose record write failed, while its Redis write (sent beside it) landed: Redis must
/// not go on serving a session the record may not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_the_record_refused_is_not_served_from_redis() {
    let fleet = Fleet::start().await;
    let a = fleet.container_over(failing(&fleet, Call::PutItem)).await;
    let fresh = fleet.container().await;
    let user = unique("user");
    let (token, session) = session_of(&user);

    let mut recorded = hooks::arm("tiered.create.recorded", &user);
    let mut cached = hooks::arm("tiered.create.cached", &user);
    let create = tokio::spawn({
        let (a, token, session) = (a.clone(), token.clone(), session.clone());
        async move { a.create(&token, &session).await }
    });
    recorded.reached().await;
    cached.reached().await;
    assert!(
        fresh.get(&token, now_unix()).await.unwrap().is_some(),
        "Redis holds the session while the create is in flight"
    );
    recorded.release();
    cached.release();
    assert!(create.await.unwrap().is_err(), "the record refused it");

    assert_eq!(fleet.record().get(&token, now_unix()).await.unwrap(), None);
    assert_eq!(
        accepted_anywhere(&token, &[&a, &fresh]).await,
        Vec::<String>::new(),
        "a session the record never held is served from Redis"
    );
}

/// A session created by a container whose clock is ahead: logout-all's marker, at the time of
/// the request, does not cover it, and a read-repair that read the record before the delete
/// lands between the record's delete and the second marker call: the repair's own re-read of the
/// record takes it out, and the second marker call still follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_all_ends_a_session_created_after_its_own_clock() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container().await);
    let user = unique("user");
    let token = SessionToken::mint(&user);
    let ahead = Session::new(&user, false, None, LIFETIMES, now_unix() + 30);
    a.create(&token, &ahead).await.unwrap();
    fleet.redis.flush();

    let mut read_gate = hooks::arm("tiered.get.recorded", &user);
    let read = tokio::spawn({
        let (a, token) = (a.clone(), token.clone());
        async move { a.get(&token, now_unix()).await }
    });
    read_gate.reached().await;
    let mut logout_gate = hooks::arm("tiered.delete_user.recorded", &user);
    let logout_all = tokio::spawn({
        let (b, user) = (b.clone(), user.clone());
        async move { b.delete_user(&UserKey::for_user(&user), now_unix()).await }
    });
    logout_gate.reached().await;
    read_gate.release();
    assert!(read.await.unwrap().unwrap().is_some(), "the read ran first");
    // The repair wrote the session back after the record dropped it (the marker, at the
    // request's time, does not cover a session from a clock ahead); its re-read of the record,
    // after the write, takes it out again, before the second marker call.
    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&fresh]).await,
        Vec::<String>::new(),
        "the repair left the session in Redis after the record dropped it"
    );
    logout_gate.release();
    assert_eq!(logout_all.await.unwrap().unwrap(), 1);

    assert_eq!(fleet.record().get(&token, now_unix()).await.unwrap(), None);
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await,
        Vec::<String>::new(),
        "a session revoked by logout-all came back"
    );
}

/// A refresh whose record update failed, while its slide of Redis's copy (sent beside it)
/// landed: Redis must not keep a later expiry than the record's, which readers would trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_record_refused_leaves_redis_no_later_expiry() {
    let fleet = Fleet::start().await;
    let a = fleet
        .container_over(failing(&fleet, Call::UpdateItem))
        .await;
    let b = fleet.container().await;
    let user = unique("user");
    let (token, session) = session_of(&user);
    b.create(&token, &session).await.unwrap();

    let later = now_unix() + 600;
    let mut recorded = hooks::arm("tiered.refresh.recorded", &user);
    let mut slid = hooks::arm("tiered.refresh.slid", &user);
    let refresh = tokio::spawn({
        let (a, token) = (a.clone(), token.clone());
        async move { a.refresh(&token, later).await }
    });
    recorded.reached().await;
    slid.reached().await;
    let served = b.get(&token, now_unix()).await.unwrap().unwrap();
    assert!(
        served.expires_at > session.expires_at,
        "Redis slid while the record's update was in flight"
    );
    slid.release();
    recorded.release();
    assert!(refresh.await.unwrap().is_err(), "the record refused it");

    let record = fleet
        .record()
        .get(&token, now_unix())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.expires_at, session.expires_at);
    let fresh = fleet.container().await;
    for store in [&a, &b, &fresh] {
        for _ in 0..2 {
            let served = store.get(&token, now_unix()).await.unwrap().unwrap();
            assert_eq!(
                served.expires_at, record.expires_at,
                "a later expiry than the record's"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_racing_logout_all_does_not_bring_the_session_back() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container().await);
    let user = unique("user");
    let (token, session) = session_of(&user);
    a.create(&token, &session).await.unwrap();

    // A's refresh has updated the record, and its slide of Redis's copy (sent beside it) has
    // not landed; B's logout-all runs in between.
    let mut recorded = hooks::arm("tiered.refresh.recorded", &user);
    let mut sliding = hooks::arm("tiered.refresh.sliding", &user);
    let refresh = tokio::spawn({
        let (a, token) = (a.clone(), token.clone());
        async move { a.refresh(&token, now_unix()).await }
    });
    recorded.reached().await;
    sliding.reached().await;
    b.delete_user(&UserKey::for_user(&user), now_unix())
        .await
        .unwrap();
    sliding.release();
    recorded.release();
    assert!(
        refresh.await.unwrap().unwrap().is_some(),
        "the refresh ran first"
    );

    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repair_racing_logout_does_not_bring_the_session_back() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container().await);
    let user = unique("user");
    let (token, session) = session_of(&user);
    a.create(&token, &session).await.unwrap();
    // Redis lost it (an eviction, an empty restart): the next read repairs it from the record.
    fleet.redis.flush();

    // A read the record, and has not written Redis yet. B logs the session out, then the same
    // user signs in again elsewhere (a create in the same hash) before A's repair lands.
    let mut gate = hooks::arm("tiered.get.recorded", &user);
    let read = tokio::spawn({
        let (a, token) = (a.clone(), token.clone());
        async move { a.get(&token, now_unix()).await }
    });
    gate.reached().await;
    assert!(b.delete(&token).await.unwrap());
    let (other, other_session) = session_of(&user);
    b.create(&other, &other_session).await.unwrap();
    gate.release();
    assert!(read.await.unwrap().unwrap().is_some(), "the read ran first");

    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &b, &fresh]).await,
        Vec::<String>::new(),
        "a logged-out session came back through a read-repair"
    );
    assert!(fresh.get(&other, now_unix()).await.unwrap().is_some());
}

/// A revocation Redis acknowledged and then lost in an empty restart, with a read-repair in flight
/// whose record read came before the revocation: the repair must not write the session back into
/// the empty Redis, where nothing is left to refuse it. Logout (its tombstone) and logout-all (its
/// marker) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repair_across_an_empty_restart_does_not_bring_a_revoked_session_back() {
    for logout_all in [false, true] {
        let fleet = Fleet::start().await;
        let (a, b) = (fleet.container().await, fleet.container().await);
        let user = unique("user");
        let (token, session) = session_of(&user);
        a.create(&token, &session).await.unwrap();
        // A miss: the next read repairs Redis from the record.
        fleet.redis.flush();

        // A has read the record and not written Redis yet. B revokes the session: the record
        // first, then Redis (a tombstone, or a marker). Then Redis restarts empty.
        let mut gate = hooks::arm("tiered.get.recorded", &user);
        let read = tokio::spawn({
            let (a, token) = (a.clone(), token.clone());
            async move { a.get(&token, now_unix()).await }
        });
        gate.reached().await;
        if logout_all {
            let revoked = b.delete_user(&UserKey::for_user(&user), now_unix()).await;
            assert_eq!(revoked.unwrap(), 1);
        } else {
            assert!(b.delete(&token).await.unwrap());
        }
        fleet.redis.flush();
        gate.release();
        assert!(read.await.unwrap().unwrap().is_some(), "the read ran first");

        let fresh = fleet.container().await;
        assert_eq!(
            accepted_anywhere(&token, &[&a, &b, &fresh]).await,
            Vec::<String>::new(),
            "a revoked session came back through a read-repair across an empty restart \
             (logout-all: {logout_all})"
        );
    }
}

/// The epoch stamped on a Redis write must be read before the record write it fences: B cannot
/// reach Redis, so its logout-all bumps the epoch instead, between A's record write and A's
/// Redis write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_stamps_the_epoch_read_before_its_record_write() {
    let fleet = Fleet::start().await;
    let a = fleet.container().await;
    let b = fleet.container_without_redis();
    let user = unique("user");
    let (token, session) = session_of(&user);

    let mut recorded = hooks::arm("tiered.create.recorded", &user);
    let mut caching = hooks::arm("tiered.create.caching", &user);
    let create = tokio::spawn({
        let (a, token, session) = (a.clone(), token.clone(), session.clone());
        async move { a.create(&token, &session).await }
    });
    recorded.reached().await;
    caching.reached().await;
    assert_eq!(
        b.delete_user(&UserKey::for_user(&user), now_unix())
            .await
            .unwrap(),
        1
    );
    caching.release();
    recorded.release();
    create.await.unwrap().unwrap();

    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &fresh]).await,
        Vec::<String>::new(),
        "a Redis entry written after an epoch bump carried the new epoch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repair_stamps_the_epoch_read_before_its_record_read() {
    let fleet = Fleet::start().await;
    let a = fleet.container().await;
    let b = fleet.container_without_redis();
    let user = unique("user");
    let (token, session) = session_of(&user);
    a.create(&token, &session).await.unwrap();
    fleet.redis.flush();

    let mut gate = hooks::arm("tiered.get.recorded", &user);
    let read = tokio::spawn({
        let (a, token) = (a.clone(), token.clone());
        async move { a.get(&token, now_unix()).await }
    });
    gate.reached().await;
    assert!(
        b.delete(&token).await.unwrap(),
        "B logs out, bumping the epoch"
    );
    gate.release();
    read.await.unwrap().unwrap();

    let fresh = fleet.container().await;
    assert_eq!(
        accepted_anywhere(&token, &[&a, &fresh]).await,
        Vec::<String>::new()
    );
}

/// The DynamoDB calls a [`FailCalls`] fails.
#[derive(Debug, Clone, Copy)]
enum Call {
    PutItem,
    UpdateItem,
}

/// Fails every DynamoDB call of one kind, before it is sent.
#[derive(Debug)]
struct FailCalls {
    call: Call,
}

impl Intercept for FailCalls {
    fn name(&self) -> &'static str {
        "FailCalls"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let input = context.input();
        let matches = match self.call {
            Call::PutItem => input.downcast_ref::<PutItemInput>().is_some(),
            Call::UpdateItem => input.downcast_ref::<UpdateItemInput>().is_some(),
        };
        if matches {
            return Err("injected: DynamoDB failed this call".into());
        }
        Ok(())
    }
}

/// A client of the fleet's table whose calls of one kind fail.
fn failing(fleet: &Fleet, call: Call) -> aws_sdk_dynamodb::Client {
    let config = fleet
        .client
        .config()
        .to_builder()
        .interceptor(FailCalls { call })
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Fails the `n`th BatchWriteItem a client sends (counting from 1), as a throttled or failing
/// DynamoDB would part-way through a logout-all.
#[derive(Debug)]
struct FailNthBatch {
    n: usize,
    seen: Arc<AtomicUsize>,
}

impl Intercept for FailNthBatch {
    fn name(&self) -> &'static str {
        "FailNthBatch"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if context
            .input()
            .downcast_ref::<BatchWriteItemInput>()
            .is_some()
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n
        {
            return Err("injected: DynamoDB failed this batch".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_all_that_fails_part_way_still_revokes_what_the_record_lost() {
    let fleet = Fleet::start().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let faulty = {
        let config = fleet
            .client
            .config()
            .to_builder()
            .interceptor(FailNthBatch {
                n: 2,
                seen: seen.clone(),
            })
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    };
    let a = fleet.container_over(faulty).await;
    let b = fleet.container().await;
    let user = unique("user");
    // More than one batch (25 deletes) of sessions.
    let mut tokens = Vec::new();
    for _ in 0..30 {
        let (token, session) = session_of(&user);
        b.create(&token, &session).await.unwrap();
        tokens.push(token);
    }

    let result = a.delete_user(&UserKey::for_user(&user), now_unix()).await;
    assert!(result.is_err(), "the second batch failed: {result:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    let record = fleet.record();
    let fresh = fleet.container().await;
    let mut lost = 0;
    for token in &tokens {
        if record.get(token, now_unix()).await.unwrap().is_some() {
            // Still in the record: still valid (the failed logout-all may be retried).
            assert!(fresh.get(token, now_unix()).await.unwrap().is_some());
            continue;
        }
        lost += 1;
        assert_eq!(
            accepted_anywhere(token, &[&a, &b, &fresh]).await,
            Vec::<String>::new(),
            "a session the record deleted is still served from Redis"
        );
    }
    assert!(lost >= 25, "the first batch went through ({lost} deleted)");
}

/// Logouts of well-formed tokens that were never issued: nothing changes in either store, and
/// no epoch is bumped, whether the container reaches Redis or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logouts_of_unknown_tokens_change_nothing() {
    let fleet = Fleet::start().await;
    let (a, b) = (fleet.container().await, fleet.container_without_redis());
    let user = unique("user");
    let (token, session) = session_of(&user);
    a.create(&token, &session).await.unwrap();
    let before = fleet.snapshot().await;
    for store in [&a, &b] {
        for _ in 0..20 {
            let forged = SessionToken::mint(&unique("nobody"));
            assert!(!store.delete(&forged).await.unwrap());
            // The same user's key, a secret that was never issued.
            assert!(!store.delete(&SessionToken::mint(&user)).await.unwrap());
            assert_eq!(store.get(&forged, now_unix()).await.unwrap(), None);
            assert_eq!(store.refresh(&forged, now_unix()).await.unwrap(), None);
        }
    }
    assert_eq!(fleet.snapshot().await, before, "forged logouts wrote");
    assert_eq!(fleet.redis_keys().await, (1, 0));
}
