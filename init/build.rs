//! Link flags for the static release berth.
//!
//! `scripts/build-berth` sets `BERTH_SMALL_LINK=1`: berth is then linked
//! with `no-unwind-tables.ld`, which drops the unwind tables the prebuilt
//! standard library and static glibc bring (about 570 kB that nothing
//! reads: that build aborts on panic, and never unwinds).
//!
//! Other builds (tests, debug builds, which unwind) link as usual.

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_SMALL_LINK");
    println!("cargo:rerun-if-changed=no-unwind-tables.ld");
    if std::env::var_os("BERTH_SMALL_LINK").is_some_and(|v| v == "1") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo:rustc-link-arg-bin=berth=-Wl,-T,{dir}/no-unwind-tables.ld");
    }
}
