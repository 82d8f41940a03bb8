//! Helpers for the end-to-end suite in `tests/tests/`.
