//! `berth-layout`: writes berth's hot-function list from QEMU's records of
//! the code it translated (`scripts/profile-layout` runs it).
//!
//! ```text
//! berth-layout qemu-args LOGDIR          QEMU's extra arguments, one per line
//! berth-layout free-port                 a free TCP port on 127.0.0.1
//! berth-layout write MAP OUT LOG...      the functions of the profiling
//!                                        build (its link MAP) that ran in
//!                                        the LOGs (workloads, most
//!                                        important first), into OUT
//! ```

use std::process::ExitCode;

use berth_qemu_test::layout;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["qemu-args", dir] => {
            for a in layout::qemu_args(&format!("{dir}/%d.log")) {
                println!("{a}");
            }
            Ok(())
        }
        ["free-port"] => berth_qemu_test::free_local_port()
            .map(|p| println!("{p}"))
            .map_err(|e| e.to_string()),
        ["write", map, out, logs @ ..] if !logs.is_empty() => write(map, out, logs),
        _ => Err(
            "usage: berth-layout qemu-args LOGDIR | free-port | write MAP OUT LOG...".to_string(),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-layout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(map: &str, out: &str, logs: &[&str]) -> Result<(), String> {
    let text = std::fs::read_to_string(map).map_err(|e| format!("{map}: {e}"))?;
    let (_, funcs) = layout::text_layout(&text).ok_or(format!("{map}: no .text"))?;
    let syms = layout::code_symbols(&funcs);
    let mut workloads = Vec::new();
    for log in logs {
        let text = std::fs::read(log).map_err(|e| format!("{log}: {e}"))?;
        let run = layout::functions_run(&String::from_utf8_lossy(&text), &syms);
        eprintln!("berth-layout: {log}: {} functions ran", run.len());
        workloads.push(run);
    }
    let list = layout::order(&workloads);
    let mut text = String::from(HEADER);
    for f in &list {
        text.push_str(f);
        text.push('\n');
    }
    std::fs::write(out, text).map_err(|e| format!("{out}: {e}"))?;
    eprintln!(
        "berth-layout: {out}: {} of {} functions",
        list.len(),
        syms.len()
    );
    Ok(())
}

/// lld reads the file as one symbol per line; `#` starts a comment.
const HEADER: &str = "\
# The functions of berth that ran in scripts/profile-layout's workloads, in
# the order the static link puts them at the start of .text (init/build.rs).
# Written by scripts/profile-layout; do not edit by hand.
";
