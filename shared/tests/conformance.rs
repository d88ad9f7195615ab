//! One conformance suite, the same cases against every store: memory, a real redis-server, a
//! real local Redis cluster and a real DynamoDB-compatible server (moto).

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use shared::session::{Lifetimes, Session, now_unix};
use shared::token::{SessionId, UserKey};
use shared::{SessionToken, Store};
use support::stores::{Subject, hex, unique};

/// What Chrome on a Mac sends; stored as "Chrome 131 on macOS".
const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

const LIFETIMES: Lifetimes = Lifetimes {
    session: 3600,
    remember_me: 2_592_000,
    max_lifetime: 7_776_000,
};

async fn new_session(
    store: &Store,
    user: &str,
    remember_me: bool,
    lifetimes: Lifetimes,
) -> (SessionToken, Session) {
    let token = SessionToken::mint(user);
    let session = Session::new(user, remember_me, Some(CHROME_MAC), lifetimes, now_unix());
    store.create(&token, &session).await.expect("create");
    (token, session)
}

async fn create_then_get(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let (token, session) = new_session(store, &user, false, LIFETIMES).await;
    let found = store
        .get(&token, now_unix())
        .await
        .unwrap()
        .expect("the new session");
    assert_eq!(found, session);
    assert_eq!(found.user_id, user);
    assert_eq!(found.expiry(), session.created_at + 3600);
    assert_eq!(found.device.as_deref(), Some("Chrome 131 on macOS"));
    // A token the store never saw is not found.
    assert_eq!(
        store
            .get(&SessionToken::mint(&user), now_unix())
            .await
            .unwrap(),
        None
    );
}

async fn remember_me_lifetime(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let (token, session) = new_session(store, &user, true, LIFETIMES).await;
    let found = store.get(&token, now_unix()).await.unwrap().unwrap();
    assert!(found.remember_me);
    assert_eq!(found.expiry(), session.created_at + 2_592_000);
    // Past the ordinary lifetime it is still valid; past its own it is not.
    let later = session.created_at + 3600 * 24;
    assert!(store.get(&token, later).await.unwrap().is_some());
    assert_eq!(
        store
            .get(&token, session.created_at + 2_592_000)
            .await
            .unwrap(),
        None
    );
}

async fn refresh_extends_but_never_past_the_cap(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let lifetimes = Lifetimes {
        session: 100,
        remember_me: 1000,
        max_lifetime: 150,
    };
    let (token, session) = new_session(store, &user, false, lifetimes).await;
    let t0 = session.created_at;
    assert_eq!(session.expiry(), t0 + 100);

    let refreshed = store
        .refresh(&token, t0 + 20)
        .await
        .unwrap()
        .expect("refresh");
    assert_eq!(refreshed.expiry(), t0 + 120);
    assert_eq!(refreshed.last_refreshed_at, t0 + 20);
    let listed = store
        .active_sessions(token.user_key(), t0 + 20)
        .await
        .unwrap();
    assert_eq!(listed[0].1.last_refreshed_at, t0 + 20);
    assert_eq!(
        store.get(&token, t0 + 110).await.unwrap().unwrap().expiry(),
        t0 + 120
    );

    let capped = store
        .refresh(&token, t0 + 90)
        .await
        .unwrap()
        .expect("refresh");
    assert_eq!(capped.expiry(), t0 + 150, "never past the absolute cap");
    let read = store.get(&token, t0 + 140).await.unwrap().unwrap();
    assert_eq!(read.expiry(), t0 + 150);
    assert_eq!(read.created_at, t0);
    assert_eq!(store.get(&token, t0 + 150).await.unwrap(), None);
    assert_eq!(
        store.refresh(&token, t0 + 150).await.unwrap(),
        None,
        "lapsed: no refresh"
    );
    assert_eq!(
        store.refresh(&SessionToken::mint(&user), t0).await.unwrap(),
        None
    );
}

async fn expired_sessions_are_refused_while_still_stored(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let now = now_unix();
    // Written already expired, as DynamoDB holds an item for days after its TTL.
    let lapsed = Session {
        expires_at: now - 10,
        ..Session::new(&user, false, None, LIFETIMES, now - 4000)
    };
    // Sliding expiry still ahead, absolute cap behind.
    let capped = Session {
        expires_at: now + 1000,
        absolute_expires_at: now - 1,
        ..Session::new(&user, true, None, LIFETIMES, now - 5000)
    };
    let live = Session::new(&user, false, None, LIFETIMES, now);
    let tokens: Vec<SessionToken> = (0..3).map(|_| SessionToken::mint(&user)).collect();
    for (token, session) in tokens.iter().zip([&lapsed, &capped, &live]) {
        store.create(token, session).await.unwrap();
    }
    assert_eq!(store.get(&tokens[0], now).await.unwrap(), None);
    assert_eq!(store.get(&tokens[1], now).await.unwrap(), None);
    assert_eq!(store.refresh(&tokens[0], now).await.unwrap(), None);
    assert_eq!(store.refresh(&tokens[1], now).await.unwrap(), None);
    assert!(
        store.get(&tokens[2], now).await.unwrap().is_some(),
        "a live session stays"
    );
    let stats = store
        .user_stats(&UserKey::for_user(&user), now)
        .await
        .unwrap();
    assert_eq!(stats.active_sessions, 1);
    assert_eq!(
        store
            .delete_user(&UserKey::for_user(&user), now)
            .await
            .unwrap(),
        1
    );
}

async fn delete_one_session(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let (a, _) = new_session(store, &user, false, LIFETIMES).await;
    let (b, _) = new_session(store, &user, false, LIFETIMES).await;
    assert!(store.delete(&a).await.unwrap());
    assert_eq!(store.get(&a, now_unix()).await.unwrap(), None);
    assert!(
        store.get(&b, now_unix()).await.unwrap().is_some(),
        "the other session stays"
    );
    assert!(
        !store.delete(&a).await.unwrap(),
        "deleting twice finds nothing"
    );
    assert_eq!(store.refresh(&a, now_unix()).await.unwrap(), None);
}

async fn list_newest_first_and_revoke_one_by_its_id(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let key = UserKey::for_user(&user);
    let now = now_unix();
    let mut tokens = Vec::new();
    // Oldest first; the last one lapsed an hour ago.
    for (age, remember_me) in [(300, true), (200, false), (100, true), (7200, false)] {
        let token = SessionToken::mint(&user);
        let session = Session::new(&user, remember_me, Some(CHROME_MAC), LIFETIMES, now - age);
        store.create(&token, &session).await.unwrap();
        tokens.push((token, session));
    }
    let listed = store.active_sessions(&key, now).await.unwrap();
    let hashes: Vec<_> = listed.iter().map(|(hash, _)| *hash).collect();
    assert_eq!(
        hashes,
        [tokens[2].0.hash(), tokens[1].0.hash(), tokens[0].0.hash()],
        "active only, newest first"
    );
    assert_eq!(listed[0].1, tokens[2].1);
    assert_eq!(listed[0].1.device.as_deref(), Some("Chrome 131 on macOS"));

    // Another user's session id names nothing of this user's, and that session stays.
    let other = unique("other");
    let (others_token, _) = new_session(store, &other, false, LIFETIMES).await;
    let others_id = SessionId::of(&others_token.hash());
    assert!(!store.revoke(&key, &others_id, now).await.unwrap());
    assert!(store.get(&others_token, now).await.unwrap().is_some());
    // Nor does the id of a lapsed session, or one never made.
    let lapsed = SessionId::of(&tokens[3].0.hash());
    assert!(!store.revoke(&key, &lapsed, now).await.unwrap());
    let never = SessionId::of(&SessionToken::mint(&user).hash());
    assert!(!store.revoke(&key, &never, now).await.unwrap());

    let middle = SessionId::of(&tokens[1].0.hash());
    assert!(store.revoke(&key, &middle, now).await.unwrap());
    assert_eq!(store.get(&tokens[1].0, now).await.unwrap(), None);
    assert_eq!(store.refresh(&tokens[1].0, now).await.unwrap(), None);
    assert!(!store.revoke(&key, &middle, now).await.unwrap(), "once");
    let left: Vec<_> = store
        .active_sessions(&key, now)
        .await
        .unwrap()
        .into_iter()
        .map(|(hash, _)| hash)
        .collect();
    assert_eq!(left, [tokens[2].0.hash(), tokens[0].0.hash()]);
    for (token, _) in [&tokens[0], &tokens[2]] {
        assert!(store.get(token, now).await.unwrap().is_some());
    }
    assert!(store.get(&others_token, now).await.unwrap().is_some());
}

async fn delete_user_removes_every_session_of_that_user_only(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let other = unique("other");
    let (others_token, _) = new_session(store, &other, true, LIFETIMES).await;
    let mut created = tokio::task::JoinSet::new();
    // Sixteen at a time: a hundred new connections at once overflow moto's listen queue (the
    // kernel drops the SYNs, the client resends them after 1, 3, 7 s), a limit of the test
    // server, not of the store.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..100 {
        let (store, user, gate) = (store.clone(), user.clone(), gate.clone());
        created.spawn(async move {
            let _turn = gate.acquire().await;
            let token = SessionToken::mint(&user);
            let session = Session::new(&user, i % 2 == 0, None, LIFETIMES, now_unix());
            store.create(&token, &session).await.map(|()| token)
        });
    }
    let tokens: Vec<SessionToken> = created
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tokens.len(), 100);
    let key = UserKey::for_user(&user);
    assert_eq!(
        store
            .user_stats(&key, now_unix())
            .await
            .unwrap()
            .active_sessions,
        100
    );

    assert_eq!(store.delete_user(&key, now_unix()).await.unwrap(), 100);
    for token in &tokens {
        assert_eq!(store.get(token, now_unix()).await.unwrap(), None);
    }
    assert_eq!(store.sessions_of(&key).await.unwrap(), vec![]);
    assert!(
        store
            .get(&others_token, now_unix())
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.delete_user(&key, now_unix()).await.unwrap(), 0);
}

async fn stats_of_a_user_and_of_everyone(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let now = now_unix();
    let mk = |remember_me, created| Session::new(&user, remember_me, None, LIFETIMES, created);
    for session in [
        mk(false, now - 30),
        mk(true, now - 20),
        mk(false, now - 10),
        mk(false, now - 10_000),
    ] {
        store
            .create(&SessionToken::mint(&user), &session)
            .await
            .unwrap();
    }
    let other = unique("other");
    new_session(store, &other, false, LIFETIMES).await;

    let stats = store
        .user_stats(&UserKey::for_user(&user), now)
        .await
        .unwrap();
    assert_eq!(
        stats.active_sessions, 3,
        "the one created 10 000 s ago has lapsed"
    );
    assert_eq!(stats.remember_me_sessions, 1);
    assert_eq!(stats.oldest_created_at, Some(now - 30));
    assert_eq!(stats.newest_created_at, Some(now - 10));
    let nobody = store
        .user_stats(&UserKey::for_user(&unique("nobody")), now)
        .await
        .unwrap();
    assert_eq!(nobody.active_sessions, 0);
    assert_eq!(nobody.oldest_created_at, None);

    let global = store.global_stats(now).await.unwrap();
    assert!(!global.partial, "a small store is walked within the budget");
    // With no time at all, a store that walks over the network stops and says so.
    let rushed = store
        .global_stats_within(now, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rushed.partial, store.backend() != "memory", "{rushed:?}");
    if subject.isolated {
        assert_eq!(global.active_sessions, 4);
        assert_eq!(global.users_with_sessions, 2);
    } else {
        assert!(
            global.active_sessions >= 4 && global.users_with_sessions >= 2,
            "{global:?}"
        );
    }
}

async fn user_cache_put_get_overwrite_expire(subject: Subject) {
    let store = &subject.store;
    let user = UserKey::for_user(&unique("user"));
    let now = now_unix();
    assert_eq!(store.cache_get(&user, now).await.unwrap(), None);
    store
        .cache_put(&user, r#"{"theme":"dark"}"#, 60, now)
        .await
        .unwrap();
    assert_eq!(
        store.cache_get(&user, now).await.unwrap().as_deref(),
        Some(r#"{"theme":"dark"}"#)
    );
    let text = r##"{"theme":"light","picked":["#fff","a|b"],"ü":1}"##;
    store.cache_put(&user, text, 60, now).await.unwrap();
    assert_eq!(
        store.cache_get(&user, now + 59).await.unwrap().as_deref(),
        Some(text)
    );
    assert_eq!(
        store.cache_get(&user, now + 60).await.unwrap(),
        None,
        "expired"
    );
    let other = UserKey::for_user(&unique("other"));
    assert_eq!(
        store.cache_get(&other, now).await.unwrap(),
        None,
        "per user"
    );
}

async fn tampered_tokens_are_not_found(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let (token, _) = new_session(store, &user, false, LIFETIMES).await;
    let (user_part, secret) = token.expose().split_once('.').unwrap();

    // One character of the secret changed (kept valid base64url).
    let mut chars: Vec<char> = secret.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    let forged_secret: String = chars.into_iter().collect();
    let forged = SessionToken::parse(&format!("{user_part}.{forged_secret}")).unwrap();
    assert_eq!(store.get(&forged, now_unix()).await.unwrap(), None);

    // The secret moved under another user's key.
    let victim = unique("victim");
    let moved =
        SessionToken::parse(&format!("{}.{secret}", B64.encode(victim.as_bytes()))).unwrap();
    assert_eq!(store.get(&moved, now_unix()).await.unwrap(), None);
    assert!(!store.delete(&moved).await.unwrap());
    assert_eq!(store.refresh(&moved, now_unix()).await.unwrap(), None);
    assert!(
        store.get(&token, now_unix()).await.unwrap().is_some(),
        "the real one is untouched"
    );
}

async fn a_store_dump_holds_no_token(subject: Subject) {
    let store = &subject.store;
    let user = unique("user");
    let mut tokens = Vec::new();
    for remember_me in [false, true] {
        tokens.push(new_session(store, &user, remember_me, LIFETIMES).await.0);
    }
    store
        .cache_put(&UserKey::for_user(&user), r#"{"k":"v"}"#, 60, now_unix())
        .await
        .unwrap();
    let Some(dump) = subject.dump().await else {
        return; // memory: nothing outside this process to dump
    };
    assert!(
        dump.contains(&hex(tokens[0].hash().as_bytes()))
            || dump.contains(&tokens[0].hash().to_hex()),
        "the dump holds the sessions, by hash"
    );
    for token in &tokens {
        let secret = token.expose().split_once('.').unwrap().1;
        assert!(!dump.contains(token.expose()), "raw token in dump");
        assert!(!dump.contains(secret), "token secret in dump");
        assert!(
            !dump.contains(&hex(&B64.decode(secret).unwrap())),
            "raw secret bytes in dump"
        );
    }
}

async fn creating_past_the_cap_evicts_the_oldest(subject: Subject) {
    let store = subject.store.with_max_sessions(3);
    let user = unique("user");
    let now = now_unix();
    let mut tokens = Vec::new();
    for age in [40, 30, 20, 10] {
        let token = SessionToken::mint(&user);
        let session = Session::new(&user, false, None, LIFETIMES, now - age);
        store.create(&token, &session).await.unwrap();
        tokens.push(token);
    }
    assert_eq!(
        store.get(&tokens[0], now).await.unwrap(),
        None,
        "the oldest is evicted"
    );
    for token in &tokens[1..] {
        assert!(store.get(token, now).await.unwrap().is_some());
    }
    let stats = store
        .user_stats(&UserKey::for_user(&user), now)
        .await
        .unwrap();
    assert_eq!(stats.active_sessions, 3);
    assert_eq!(stats.oldest_created_at, Some(now - 30));
    // Another user's sessions do not count against this one's cap.
    let other = unique("other");
    let (other_token, _) = new_session(&store, &other, false, LIFETIMES).await;
    assert!(store.get(&other_token, now_unix()).await.unwrap().is_some());
    assert!(store.get(&tokens[1], now).await.unwrap().is_some());
}

/// Past the cap the oldest session goes first, ties (the same second) broken by token hash, and a
/// create never evicts a session newer than itself, so that concurrent creates at the cap end as
/// some order of them would. Checked against that rule replayed here: every store keeps the same
/// sessions, and with both stores Redis keeps no session the record evicted.
async fn eviction_is_oldest_first_ties_by_token_hash(subject: Subject) {
    const CAP: usize = 3;
    let store = subject.store.with_max_sessions(CAP);
    let user = unique("user");
    let now = now_unix();
    // Five in one second, one a second later, then one stamped in the future (a skewed clock).
    let created = [0, 0, 0, 0, 0, 1, 50].map(|offset| now - 100 + offset);
    let mut live: Vec<(i64, [u8; 32])> = Vec::new();
    let mut tokens = Vec::new();
    for (i, at) in created.iter().enumerate() {
        let token = SessionToken::mint(&user);
        let session = Session::new(&user, false, None, LIFETIMES, *at);
        store.create(&token, &session).await.unwrap();
        let new = (*at, *token.hash().as_bytes());
        if live.len() >= CAP {
            let excess = live.len() + 1 - CAP;
            live.sort_unstable();
            let older = live.iter().filter(|s| **s < new).count();
            live.drain(..excess.min(older));
        }
        live.push(new);
        tokens.push((i, token));
    }
    for (i, token) in &tokens {
        let kept = live.contains(&(created[*i], *token.hash().as_bytes()));
        assert_eq!(
            store.get(token, now).await.unwrap().is_some(),
            kept,
            "session {i} (created {}) should be {}",
            created[*i],
            if kept { "kept" } else { "evicted" }
        );
    }
}

macro_rules! conformance {
    ($($store:ident: $subject:expr;)+) => {$(
        mod $store {
            use super::*;

            conformance!(@cases $subject;
                create_then_get,
                remember_me_lifetime,
                refresh_extends_but_never_past_the_cap,
                expired_sessions_are_refused_while_still_stored,
                delete_one_session,
                list_newest_first_and_revoke_one_by_its_id,
                delete_user_removes_every_session_of_that_user_only,
                stats_of_a_user_and_of_everyone,
                user_cache_put_get_overwrite_expire,
                tampered_tokens_are_not_found,
                a_store_dump_holds_no_token,
                creating_past_the_cap_evicts_the_oldest,
                eviction_is_oldest_first_ties_by_token_hash,
            );
        }
    )+};
    (@cases $subject:expr; $($case:ident,)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            super::$case($subject).await;
        }
    )+};
}

conformance! {
    memory: async { support::stores::memory() }.await;
    redis: support::stores::redis_standalone().await;
    redis_cluster: support::stores::redis_cluster().await;
    dynamodb: support::stores::dynamodb().await;
    redis_in_front_of_dynamodb: support::stores::tiered().await;
}
