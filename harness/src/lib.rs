//! metaboot-harness: guest images, the namespace lab, QEMU boots, checks from outside and reports.

pub mod atomic;
pub mod bench;
pub mod boot;
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
