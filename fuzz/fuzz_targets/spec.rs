//! Spec text → parse, shape, validation, render: no panic, no hang, bounded memory.
#![no_main]

#[path = "../spec_body.rs"]
mod spec_body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| spec_body::run(data));
