//! Links the release executable with the functions that serving runs side
//! by side (`link/hot-functions.txt`, made by `scripts/hot-functions.sh`),
//! and with packed relative relocations. The kernel maps an executable's
//! pages in 64 KiB windows (or whole large folios) around each page it
//! runs: with the webhook's functions spread over 11 MiB of `.text`, a
//! serving process had most of it resident; packed, about 2 MiB. RELR
//! shrinks the 650 KiB of relocations the loader reads at every start to
//! 12 KiB. Neither changes the code that runs (docs/performance.md).
//!
//! Both are lld options: applied where rustc links with its own lld
//! (x86_64-unknown-linux-gnu since Rust 1.90) unless another linker was
//! chosen; any other build links as before, with a cargo warning.

use std::env;
use std::process::Command;

const ORDER: &str = "link/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    // A linker chosen in RUSTFLAGS or in Cargo's configuration (which
    // Cargo hands to build scripts as RUSTC_LINKER) may not be lld.
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker_chosen = flags.contains("linker") || env::var_os("RUSTC_LINKER").is_some();
    if linker_chosen || !rustc_links_with_lld() {
        println!("cargo:warning=not linking with rustc's lld: {ORDER} and RELR not applied");
        return;
    }
    // Relative: Cargo runs rustc, and so the linker, in the workspace root.
    // An absolute path would be this checkout's, and Cargo reuses a build
    // script's output in every checkout that shares the target directory
    // (the Makefile shares one): another checkout then linked with this
    // one's file, or failed once it was removed.
    for arg in [
        format!("-Wl,--symbol-ordering-file={ORDER}"),
        // Names of the other build configuration, or of functions since
        // renamed, are expected: the file serves two builds.
        "-Wl,--no-warn-symbol-ordering".into(),
        "-Wl,-z,pack-relative-relocs".into(),
    ] {
        println!("cargo:rustc-link-arg-bin=dind-injector={arg}");
    }
}

/// rustc 1.90 and later link x86_64-unknown-linux-gnu with their own lld.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
