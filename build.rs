//! Lays out the daemon's code so that what a start and an idle daemon run sits
//! together: `link-order.txt` (made by `scripts/link-order`) names those functions, and
//! the linker places them first. An idle daemon's memory is mostly the pages of code
//! it touched; scattered over the executable, its start touched most of them.
//!
//! Only for release builds on x86-64 Linux with rustc's own LLD, the default linker
//! there: other linkers do not take `--symbol-ordering-file`. A name the executable
//! no longer has (the code changed since the file was made) is skipped.
//!
//! The linker reads a copy in `OUT_DIR`: the quickstart's tests build a copy of the
//! repository into the same target directory, and cargo may then reuse this script's
//! output there, so a path into the checkout could name one that is gone.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let lld_target = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    // A linker of one's own choosing may not be LLD.
    let own_linker = env::var("CARGO_ENCODED_RUSTFLAGS")
        .is_ok_and(|flags| flags.contains("linker"))
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    let (Some(dir), Some(out)) = (env::var_os("CARGO_MANIFEST_DIR"), env::var_os("OUT_DIR")) else {
        return;
    };
    let order = Path::new(&dir).join("link-order.txt");
    if release && lld_target && !own_linker && order.exists() {
        let copy = Path::new(&out).join("link-order.txt");
        if let Err(error) = std::fs::copy(&order, &copy) {
            println!("cargo::warning=link-order.txt not used: cannot copy it to OUT_DIR: {error}");
            return;
        }
        let copy = copy.display();
        println!("cargo::rustc-link-arg-bin=chatsender=-Wl,--symbol-ordering-file={copy}");
        println!("cargo::rustc-link-arg-bin=chatsender=-Wl,--no-warn-symbol-ordering");
    }
}
