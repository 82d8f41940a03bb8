//! `metaboot`: the guest agent binary (fetch instance metadata, apply it under a root). No std
//! runtime start-up: `metaboot::start` says why and does what the agent needs of it.
// The bin's test build keeps the test harness's own `main`.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    metaboot::start::prepare();
    // The output relay of a script's background process (agent/src/apply/scripts.rs), run by
    // metaboot itself: no command of the command line.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|arg| arg == metaboot::apply::scripts::RELAY_COMMAND)
    {
        std::process::exit(i32::from(metaboot::apply::scripts::relay_main(&args)));
    }
    let cli = metaboot::cli::Cli::from_env();
    // `exit` flushes standard output, as returning from a std `main` does.
    std::process::exit(i32::from(metaboot::main_with(cli)))
}

/// glibc's message lookup, in the C locale the agent runs in: `metaboot::messages` says why.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn __dcgettext(
    domain: *const libc::c_char,
    msgid: *const libc::c_char,
    category: libc::c_int,
) -> *mut libc::c_char {
    metaboot::messages::untranslated(domain, msgid, category)
}
