//! The AFL++ harness: `fuzz TARGET` reads test cases from stdin, in AFL++'s
//! persistent mode (many cases per process) when run under `afl-fuzz`, and
//! once otherwise (to reproduce a crash: `fuzz review < crash`).

#[path = "targets.rs"]
mod targets;

use std::io::Read;

// AFL++ looks for these markers in the binary to use persistent mode and a
// deferred fork server (what its `__AFL_LOOP` macro embeds in C).
#[used]
static PERSISTENT: &[u8] = b"##SIG_AFL_PERSISTENT##\0";
#[used]
static DEFERRED: &[u8] = b"##SIG_AFL_DEFER_FORKSRV##\0";

extern "C" {
    fn __afl_persistent_loop(max: u32) -> i32;
    fn __afl_manual_init();
}

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some((_, target)) = targets::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<_> = targets::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: fuzz TARGET < input; targets: {}", names.join(", "));
        std::process::exit(2);
    };
    // A panic is the crash AFL++ looks for.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{info}");
        std::process::abort();
    }));
    let mut input = Vec::new();
    // SAFETY: AFL++'s runtime (afl-compiler-rt.o, linked in by `make fuzz`)
    // defines both; called from the one thread, as its C macros do.
    unsafe { __afl_manual_init() };
    while unsafe { __afl_persistent_loop(10_000) } != 0 {
        input.clear();
        if std::io::stdin().read_to_end(&mut input).is_ok() {
            target(&input);
        }
    }
}
