//! Pause points for step-by-step race tests.
//!
//! The store protocol marks the moments between its steps where a concurrent request can slip
//! in (`hook!("tiered.create.recorded", user)`). With the `test-hooks` feature, which only this
//! crate's own tests enable (a dev-dependency on itself), a test arms a point for one user, waits
//! until a request reaches it, runs the competing request, and releases the first: the race is
//! forced on every run, not left to luck. Without the feature `hook!` expands to nothing, so no
//! function build carries any of this.

/// Marks a pause point on the protocol path; `$user` is the [`crate::token::UserKey`] concerned.
macro_rules! hook {
    ($point:literal, $user:expr) => {
        #[cfg(feature = "test-hooks")]
        $crate::hooks::reached($point, $user).await;
    };
}
pub(crate) use hook;

/// Marks a point where a pause widens a race (a read whose age matters); in tests that ask for
/// it, a random pause of up to the jitter set with `set_jitter`.
macro_rules! jitter_point {
    () => {
        #[cfg(feature = "test-hooks")]
        $crate::hooks::jitter().await;
    };
}
pub(crate) use jitter_point;

#[cfg(feature = "test-hooks")]
pub use armed::*;

#[cfg(feature = "test-hooks")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, PoisonError};
    use tokio::sync::oneshot;

    struct Armed {
        point: &'static str,
        user: String,
        reached: oneshot::Sender<()>,
        release: oneshot::Receiver<()>,
    }

    static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

    /// Held around each epoch bump in test builds: see `DynamoStore::bump_epoch`.
    pub static MOTO_TRANSACTIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    /// Longest random pause at a pause point or jitter point, in µs; 0: none.
    static JITTER_MICROS: AtomicU64 = AtomicU64::new(0);

    /// Pauses at every pause and jitter point for a random time up to `max` (zero: never), so
    /// that randomized histories land in the windows between a protocol's steps far more often
    /// than timing alone would. Process-wide.
    pub fn set_jitter(max: std::time::Duration) {
        JITTER_MICROS.store(max.as_micros() as u64, Ordering::Relaxed);
    }

    /// A random pause at a jitter point (`jitter_point!`): half the time, mostly up to the
    /// jitter and one time in twenty a long one (see [`pause`]).
    pub async fn jitter() {
        pause(20).await;
    }

    /// A random pause, half the time: up to the jitter, or one time in `long_one_in` a long one
    /// (two to seven times the jitter), in which a whole competing request fits — a logout whose
    /// Redis write failed and whose epoch bump went through, between a read of the record and
    /// the repair that follows it. A heavy tail reaches those interleavings far more often than
    /// a wider even spread would, for less waiting.
    async fn pause(long_one_in: u64) {
        let max = JITTER_MICROS.load(Ordering::Relaxed);
        if max == 0 {
            return;
        }
        let roll = u64::from(getrandom::u32().unwrap_or(0));
        if roll % 2 == 0 {
            let micros = match (roll >> 1) % long_one_in {
                0 => 2 * max + (roll >> 6) % (5 * max),
                _ => (roll >> 6) % max,
            };
            tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
        }
    }

    /// One armed pause point: the next request of that user to reach it waits until released (or
    /// until the gate is dropped).
    pub struct Gate {
        reached: Option<oneshot::Receiver<()>>,
        release: Option<oneshot::Sender<()>>,
    }

    /// Arms `point` for the next request of `user_id`; other users pass through.
    pub fn arm(point: &'static str, user_id: &str) -> Gate {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        ARMED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Armed {
                point,
                user: crate::token::UserKey::for_user(user_id).as_str().to_owned(),
                reached: reached_tx,
                release: release_rx,
            });
        Gate {
            reached: Some(reached_rx),
            release: Some(release_tx),
        }
    }

    impl Gate {
        /// Waits until a request stands at the point.
        pub async fn reached(&mut self) {
            if let Some(reached) = self.reached.take() {
                reached
                    .await
                    .expect("the armed point was dropped unreached");
            }
        }

        /// Lets the waiting request go on.
        pub fn release(mut self) {
            if let Some(release) = self.release.take() {
                let _ = release.send(());
            }
        }
    }

    /// Called by `hook!`: waits here if a test armed this point for this user, else jitters.
    pub async fn reached(point: &'static str, user: &crate::token::UserKey) {
        let armed = {
            let mut list = ARMED.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter()
                .position(|a| a.point == point && a.user == user.as_str())
                .map(|i| list.swap_remove(i))
        };
        match armed {
            Some(armed) => {
                let _ = armed.reached.send(());
                // A dropped gate releases too.
                let _ = armed.release.await;
            }
            // Between a write to the record and what follows it: long pauses more often.
            None => pause(6).await,
        }
    }
}
