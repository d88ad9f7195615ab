#![allow(dead_code)]

pub mod servers;
pub mod stores;
