#![no_main]
//! The stored-record decoders against what the encoders write (`shared::store::records`): the
//! Redis session field and cache entry, the DynamoDB session and cache items.
//!
//! The first byte picks what the rest is:
//! - 0: a Redis session field as stored text: decoding never panics; what it decodes, encoded
//!   again, decodes to the same session and epoch; the stats walk reads the same times;
//! - 1: a session as the service makes one (`Session::new`, then refreshes): both stores give it
//!   back exactly;
//! - 2: any session, every field any value: both stores give it back exactly;
//! - 3: a DynamoDB session item, written by the encoder then edited attribute by attribute
//!   (dropped, retyped, any number text): decoding never panics; what it decodes round-trips;
//! - 4: a Redis cache entry as stored text: decoding never panics; what it decodes round-trips;
//! - 5: cached JSON text (any text) with its expiry and epoch: both stores give it back byte for
//!   byte, and refuse it once expired.

use libfuzzer_sys::fuzz_target;
use shared::session::{Lifetimes, Session};
use shared::store::records::{self, AttributeValue, Item};
use shared::token::{TokenHash, UserKey};

fuzz_target!(init: session_service_fuzz::setup(), |data: &[u8]| run(data));

fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Input(rest);
    match mode % 6 {
        0 => redis_session_text(rest),
        1 => {
            let session = made_session(&mut input);
            assert_ne!(session.device.as_deref(), Some(""), "an empty device kept");
            round_trip(&session);
        }
        2 => {
            let session = any_session(&mut input);
            round_trip(&session);
        }
        3 => dynamodb_item(&mut input),
        4 => redis_cache_text(rest),
        _ => cache_round_trip(&mut input),
    }
}

/// The input, read field by field; short input reads as zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// Text of a length given by one byte.
    fn text(&mut self) -> String {
        let len = usize::from(self.byte()).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn rest(&mut self) -> String {
        String::from_utf8_lossy(std::mem::take(&mut self.0)).into_owned()
    }
}

fn user_key(session: &Session) -> UserKey {
    UserKey::for_user(&session.user_id)
}

/// What a store decodes must be what it was given; an empty device is none in both (a Redis
/// record cannot tell them apart, and `Session::new` never makes an empty one).
fn round_trip(given: &Session) {
    let user = user_key(given);
    let session = &Session {
        device: given.device.clone().filter(|d| !d.is_empty()),
        ..given.clone()
    };
    for epoch in [0, 7, u64::MAX] {
        let record = records::redis_session(given, epoch);
        let decoded = records::redis_session_decode(&user, &record);
        assert_eq!(
            decoded.as_ref().ok(),
            Some(&(session.clone(), epoch)),
            "Redis: {record:?} decoded as {decoded:?}"
        );
        assert_eq!(
            records::redis_session_times(&record),
            Some((session.expiry(), session.created_at)),
            "Redis times of {record:?}"
        );
    }
    let hash = TokenHash([7; 32]);
    let item = records::dynamodb_session(&user, &hash, given);
    let decoded = records::dynamodb_session_decode(&user, &item);
    assert_eq!(
        decoded.as_ref().ok(),
        Some(session),
        "DynamoDB: {item:?} decoded as {decoded:?}"
    );
}

/// A session as `Session::new` makes one, for any user, user agent, flag and lifetimes, then
/// refreshed at later times.
fn made_session(input: &mut Input) -> Session {
    let user_id = input.text();
    let remember_me = input.byte() & 1 == 1;
    let lifetimes = Lifetimes {
        session: input.u64(),
        remember_me: input.u64(),
        max_lifetime: input.u64(),
    };
    let now = input.i64();
    let refreshes: Vec<i64> = (0..input.byte() % 4).map(|_| input.i64()).collect();
    let user_agent = input.rest();
    let has_agent = !user_agent.is_empty();
    let mut session = Session::new(
        &user_id,
        remember_me,
        has_agent.then_some(user_agent.as_str()),
        lifetimes,
        now,
    );
    for at in refreshes {
        session = session.refreshed(at);
    }
    session
}

/// A session with every field any value (a device label never holds `/`: a stored device with
/// one is a user agent from before labels, read as its label).
fn any_session(input: &mut Input) -> Session {
    let user_id = input.text();
    let created_at = input.i64();
    let expires_at = input.i64();
    let absolute_expires_at = input.i64();
    let idle_timeout = input.u64();
    let flags = input.byte();
    let last_refreshed_at = input.i64();
    let device = input.rest().replace('/', " ");
    Session {
        user_id,
        created_at,
        expires_at,
        absolute_expires_at,
        idle_timeout,
        remember_me: flags & 1 == 1,
        last_refreshed_at,
        device: (flags & 2 == 2).then_some(device),
    }
}

fn redis_session_text(rest: &[u8]) {
    let Ok(record) = std::str::from_utf8(rest) else {
        return;
    };
    let user = UserKey::for_user("user_fuzz");
    let Ok((session, epoch)) = records::redis_session_decode(&user, record) else {
        return;
    };
    assert_eq!(session.user_id, "user_fuzz");
    assert_eq!(
        records::redis_session_times(record),
        Some((session.expiry(), session.created_at)),
        "the stats walk reads {record:?} otherwise"
    );
    let again = records::redis_session(&session, epoch);
    assert_eq!(
        records::redis_session_decode(&user, &again).ok(),
        Some((session, epoch)),
        "{record:?} written again as {again:?}"
    );
}

fn dynamodb_item(input: &mut Input) {
    const NAMES: [&str; 13] = [
        "pk",
        "sk",
        "created_at",
        "expires_at",
        "absolute_expires_at",
        "idle_timeout",
        "remember_me",
        "last_refreshed_at",
        "last_seen_at",
        "ttl",
        "device",
        "user_agent",
        "data",
    ];
    let session = any_session(&mut Input(&[]));
    let user = UserKey::for_user("user_fuzz");
    let mut item: Item = records::dynamodb_session(&user, &TokenHash([1; 32]), &session);
    while !input.0.is_empty() {
        let name = match usize::from(input.byte()) {
            i if i < NAMES.len() => NAMES[i].to_owned(),
            _ => input.text(),
        };
        let value = match input.byte() % 6 {
            0 => {
                item.remove(&name);
                continue;
            }
            1 => AttributeValue::N(input.text()),
            2 => AttributeValue::S(input.text()),
            3 => AttributeValue::Bool(input.byte() & 1 == 1),
            4 => AttributeValue::Null(true),
            _ => AttributeValue::L(Vec::new()),
        };
        item.insert(name, value);
    }
    let Ok(decoded) = records::dynamodb_session_decode(&user, &item) else {
        return;
    };
    assert_eq!(decoded.user_id, "user_fuzz");
    let again = records::dynamodb_session(&user, &TokenHash([1; 32]), &decoded);
    assert_eq!(
        records::dynamodb_session_decode(&user, &again).ok(),
        Some(decoded),
        "{item:?} written again as {again:?}"
    );
}

fn redis_cache_text(rest: &[u8]) {
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok((expires_at, epoch, json)) = records::redis_cache_decode(value) else {
        return;
    };
    let again = records::redis_cache(json, expires_at, epoch);
    assert_eq!(
        records::redis_cache_decode(&again).ok(),
        Some((expires_at, epoch, json)),
        "{value:?} written again as {again:?}"
    );
}

fn cache_round_trip(input: &mut Input) {
    let expires_at = input.i64();
    let epoch = input.u64();
    let now = input.i64();
    let json = input.rest();
    let value = records::redis_cache(&json, expires_at, epoch);
    assert_eq!(
        records::redis_cache_decode(&value).ok(),
        Some((expires_at, epoch, json.as_str())),
        "Redis cache entry {value:?}"
    );
    let user = UserKey::for_user("user_fuzz");
    let item = records::dynamodb_cache(&user, &json, expires_at);
    let read = records::dynamodb_cache_decode(&item, now);
    assert_eq!(
        read.ok(),
        Some((expires_at > now).then_some(json)),
        "DynamoDB cache item {item:?}"
    );
}
