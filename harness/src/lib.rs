//! metaboot-harness: guest images, the namespace lab, QEMU boots, checks from outside and reports.

pub mod atomic;
pub mod cli;
pub mod image;
pub mod lab;
pub mod process;
pub mod wait;
pub mod workspace;
