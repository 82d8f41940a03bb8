//! metaboot-harness: guest images, the namespace lab, QEMU boots, checks from outside, reports,
//! and the metadata chain as real processes for the tests and the bench.

pub mod args;
pub mod atomic;
pub mod bench;
pub mod boot;
pub mod chain;
pub mod check;
pub mod cli;
pub mod guest;
pub mod image;
pub mod lab;
pub mod postgres;
pub mod process;
pub mod progress;
pub mod report;
pub mod run;
pub mod scenario;
pub mod step;
pub mod wait;
pub mod workspace;
