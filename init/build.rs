//! Link flags for the static release berth.
//!
//! `scripts/build-berth` sets `BERTH_SMALL_LINK=1`: berth is then linked
//! with `no-unwind-tables.ld`, which drops the unwind tables the prebuilt
//! standard library and static glibc bring (about 570 kB that nothing
//! reads: that build aborts on panic, and never unwinds).
//!
//! It also puts the functions listed in `hot-functions.txt` first in
//! `.text`, in that order: the ones that run, recorded by
//! `scripts/profile-layout`, so that PID 1 maps a few contiguous 64 KiB
//! windows of its binary instead of nearly all of it (the kernel maps file
//! pages around each fault in windows that size). Names that no longer
//! exist are skipped; the boot test says when too many have gone. The link
//! map is written beside the binary (`berth.map`) for that test and for
//! the profile.
//!
//! Other builds (tests, debug builds, which unwind) link as usual.

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_SMALL_LINK");
    println!("cargo:rerun-if-changed=no-unwind-tables.ld");
    println!("cargo:rerun-if-changed=hot-functions.txt");
    if std::env::var_os("BERTH_SMALL_LINK").is_some_and(|v| v == "1") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo:rustc-link-arg-bin=berth=-Wl,-T,{dir}/no-unwind-tables.ld");
        println!(
            "cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={dir}/hot-functions.txt"
        );
        println!("cargo:rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
        // OUT_DIR is <target>/<triple>/release/build/berth-<hash>/out: the
        // map goes beside the binary.
        if let Some(release) = std::env::var_os("OUT_DIR")
            .map(std::path::PathBuf::from)
            .and_then(|o| Some(o.parent()?.parent()?.parent()?.to_path_buf()))
        {
            println!(
                "cargo:rustc-link-arg-bin=berth=-Wl,-Map={}",
                release.join("berth.map").display()
            );
        }
    }
}
