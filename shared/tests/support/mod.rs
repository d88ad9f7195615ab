#![allow(dead_code)]

pub mod faults;
pub mod keys;
pub mod servers;
pub mod stores;
pub mod watch;
