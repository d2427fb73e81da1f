//! `docs/benchmarks.md`, made from the results JSON alone: every number in
//! it comes from the run that wrote `bench/results.json`.

use std::fmt::Write as _;

use serde_json::{Value, json};

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// A number with `d` decimals, or "–".
fn n(v: &Value, d: usize) -> String {
    f(v).map_or_else(|| "–".to_owned(), |x| format!("{x:.d$}"))
}

fn mib(kib: &Value) -> String {
    f(kib).map_or_else(|| "–".to_owned(), |k| format!("{:.2}", k / 1024.0))
}

fn bytes_mb(b: &Value) -> String {
    f(b).map_or_else(
        || "–".to_owned(),
        |x| format!("{:.2} MB ({:.2} MiB)", x / 1e6, x / 1048576.0),
    )
}

fn ratio(a: &Value, b: &Value) -> String {
    match (f(a), f(b)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// One goal: `{name, target, value, pass}`.
fn goal(name: &str, target: &str, value: Option<f64>, shown: String, pass: Option<bool>) -> Value {
    json!({"name": name, "target": target, "value": value, "shown": shown, "pass": pass})
}

/// The goals, judged on the results (never asserted anywhere).
pub fn goals(r: &Value) -> Value {
    let mut g = Vec::new();
    let start = &r["start"];
    let (be, ce) = (
        f(&start["berth"]["exec_ms"]["median"]),
        f(&start["crun"]["exec_ms"]["median"]),
    );
    let v = be.zip(ce).map(|(b, c)| b / c);
    g.push(goal(
        "container start (spawn to exec), berth / crun",
        "≤ 0.25",
        v,
        be.zip(ce).map_or("not measured".into(), |(b, c)| {
            format!("{b:.1} ms / {c:.1} ms = {:.2}", b / c)
        }),
        v.map(|x| x <= 0.25),
    ));
    let boot = &r["boot"];
    let (bb, lb) = (
        f(&boot["berth"]["pid1_to_exec_ms"]["median"]),
        f(&boot["baseline"]["pid1_to_exec_ms"]["median"]),
    );
    let v = bb.zip(lb).map(|(b, l)| b / l);
    g.push(goal(
        "PID 1 to first container exec, berth / busybox+crun baseline",
        "≤ 0.33",
        v,
        bb.zip(lb).map_or("not measured".into(), |(b, l)| {
            format!("{b:.0} ms / {l:.0} ms = {:.2}", b / l)
        }),
        v.map(|x| x <= 1.0 / 3.0),
    ));
    let rss = f(&r["memory"]["idle_10"]["rss_kib"]);
    g.push(goal(
        "berth's RSS with 10 idle containers",
        "≤ 4 MiB",
        rss,
        rss.map_or("not measured".into(), |k| format!("{:.2} MiB", k / 1024.0)),
        rss.map(|k| k <= 4096.0),
    ));
    let bin = f(&r["size"]["berth_bytes"]);
    g.push(goal(
        "static berth binary",
        "≤ 4 MiB",
        bin,
        bin.map_or("not measured".into(), |b| {
            format!("{:.2} MiB", b / 1048576.0)
        }),
        bin.map(|b| b <= 4.0 * 1048576.0),
    ));
    let img = f(&r["size"]["image_bytes"]);
    g.push(goal(
        "example image (kernel + initramfs)",
        "< 20 MB",
        img,
        img.map_or("not measured".into(), |b| format!("{:.2} MB", b / 1e6)),
        img.map(|b| b < 20e6),
    ));
    Value::Array(g)
}

fn verdict(pass: &Value) -> &'static str {
    match pass.as_bool() {
        Some(true) => "**pass**",
        Some(false) => "**miss**",
        None => "not measured",
    }
}

/// median and p95 of a summary, as "median (p95)".
fn mp(s: &Value, d: usize) -> String {
    if s.is_null() {
        return "–".into();
    }
    format!("{} ({})", n(&s["median"], d), n(&s["p95"], d))
}

/// The whole document.
pub fn markdown(r: &Value) -> String {
    let mut o = String::new();
    let m = &r["meta"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `scripts/bench` from one run; every number below is in \
         [`bench/results.json`](../bench/results.json) with all its samples. Do not edit \
         by hand: run `scripts/bench` again. Medians, with the 95th percentile in \
         parentheses where a row has repeated runs. The goals are judged here, never \
         asserted by a test.\n"
    );
    let accel = s(&m["accelerator"]);
    let _ = writeln!(o, "| run | |\n| --- | --- |");
    let dirty = if m["dirty"].as_bool() == Some(true) {
        " (with uncommitted changes)"
    } else {
        ""
    };
    for (k, v) in [
        ("date", s(&m["date"])),
        ("commit", format!("`{}`{dirty} {}", s(&m["commit"]), s(&m["commit_subject"]))),
        (
            "machine",
            format!("{}, {} cores, {} GiB", s(&m["cpu"]), m["cores"], m["memory_gib"]),
        ),
        ("host kernel", s(&m["host_kernel"])),
        (
            "load average (1, 5, 15 min) at the start and the end",
            format!("{} / {}", s(&m["load_at_start"]), s(&m["load_at_end"])),
        ),
        ("guest kernel", s(&m["guest_kernel"])),
        ("QEMU", s(&m["qemu"])),
        (
            "QEMU accelerator",
            match accel.as_str() {
                "tcg" => "TCG (software emulation: the KVM probe failed or KVM is absent; absolute times are slow, ratios are what count)".into(),
                "kvm" => "KVM".into(),
                other => other.to_owned(),
            },
        ),
        ("guest machine", s(&m["machine"])),
        ("peers", format!("{}; {}; umoci {}", s(&m["crun"]), s(&m["runc"]), s(&m["umoci"]))),
        ("the run took", format!("{} s", m["elapsed_s"])),
    ] {
        let _ = writeln!(o, "| {k} | {v} |");
    }

    let _ = writeln!(
        o,
        "\n## Goals\n\n| goal | target | measured | |\n| --- | --- | --- | --- |"
    );
    for g in r["goals"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            s(&g["name"]),
            s(&g["target"]),
            s(&g["shown"]),
            verdict(&g["pass"])
        );
    }

    boot_section(&mut o, r);
    start_section(&mut o, r);
    memory_section(&mut o, r);
    size_section(&mut o, r);
    scale_section(&mut o, r);
    callgrind_section(&mut o, r);
    unpack_section(&mut o, r);
    ports_section(&mut o, r);
    misses_section(&mut o, r);
    method_section(&mut o);
    o
}

fn boot_section(o: &mut String, r: &Value) {
    let b = &r["boot"];
    let _ = writeln!(o, "\n## Boot\n");
    if b.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "Guest uptime in ms, {} boots of each, alternating. berth boots an image with one \
         busybox container; the baseline is a busybox `sh` init on the same kernel, QEMU and \
         modules that starts the same container with Debian's crun (see Method).\n",
        b["rounds"]
    );
    let _ = writeln!(
        o,
        "| ms | berth | baseline | berth / baseline |\n| --- | --- | --- | --- |"
    );
    for (label, key) in [
        ("uptime at PID 1's start", "uptime_pid1_ms"),
        ("uptime at ready", "uptime_ready_ms"),
        ("uptime at the container's exec", "uptime_exec_ms"),
        ("PID 1 → ready", "pid1_to_ready_ms"),
        ("**PID 1 → the container's exec**", "pid1_to_exec_ms"),
    ] {
        let (x, y) = (&b["berth"][key], &b["baseline"][key]);
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} |",
            mp(x, 0),
            mp(y, 0),
            ratio(&x["median"], &y["median"])
        );
    }
    for (who, title) in [
        (
            "berth",
            "Where berth's time goes: the steps it logs with their durations, and the spans between its log lines",
        ),
        ("baseline", "Where the baseline's time goes, from its marks"),
    ] {
        let Some(phases) = b[who]["phases"].as_array() else {
            continue;
        };
        let _ = writeln!(
            o,
            "\n{title} (ms, median (p95)):\n\n| | ms |\n| --- | --- |"
        );
        for p in phases {
            let _ = writeln!(
                o,
                "| {} | {} |",
                p["name"].as_str().unwrap_or(""),
                mp(&p["ms"], 1)
            );
        }
    }
    let _ = writeln!(
        o,
        "\nberth's steps overlap: it loads the device modules in a helper process beside the \
         first containers, and under one vCPU everything shares it, so the spans do not add up \
         to the whole. A negative span means berth logged the container running before its \
         first program read the clock: berth learns of the exec when the setup's socket \
         closes at execve. The baseline loads the same device modules in the background too."
    );
}

fn start_section(o: &mut String, r: &Value) {
    let st = &r["start"];
    let _ = writeln!(o, "\n## Container start\n");
    if st.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let rounds = st["berth"]["exec_ms"]["n"].clone();
    let _ = writeln!(
        o,
        "In the same guest, from the same busybox files, {rounds} runs of each, taking turns. \
         *Spawn → exec*: from the request (berth: `POST /v1/containers/NAME/start` on its API \
         socket; crun and runc: starting `crun run`/`runc run`) to the container's first \
         program writing the monotonic clock. */bin/true*: from the request until the \
         container has exited (berth: its `die` event; crun and runc: `run` returns, the \
         container deleted). Every container gets namespaces (mount, PID, UTS, IPC, cgroup, \
         network with loopback only), a cgroup with memory, CPU and pids limits, and the \
         seccomp allow-list; the floor is busybox `unshare -m -u -i -n -p -f` and exec.\n"
    );
    let _ = writeln!(
        o,
        "| | spawn → exec, ms | / crun | /bin/true, ms | / crun |\n| --- | --- | --- | --- | --- |"
    );
    let crun = &st["crun"];
    for (name, key) in [
        ("berth (API)", "berth"),
        ("crun run", "crun"),
        ("runc run", "runc"),
        ("floor: unshare + exec", "unshare"),
    ] {
        let x = &st[key];
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} | {} |",
            mp(&x["exec_ms"], 1),
            ratio(&x["exec_ms"]["median"], &crun["exec_ms"]["median"]),
            mp(&x["true_ms"], 1),
            ratio(&x["true_ms"]["median"], &crun["true_ms"]["median"]),
        );
    }
}

fn memory_section(o: &mut String, r: &Value) {
    let mm = &r["memory"];
    let _ = writeln!(o, "\n## Memory\n");
    if mm.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "PID 1's memory from `/proc/1/smaps_rollup`, 2 s after the idle containers \
         (`sleep`, each on the bridge) all run; they are added by reloading the manifest. \
         The bench's own containers run throughout (the privileged `tools` container the \
         readings are taken from, two probes, two TCP sinks), so \"0 idle\" is berth with \
         those 5. *Anonymous* is the part that is not the binary's pages: heap and stacks. \
         *API RSS* is berth's own `VmRSS` from `/v1/system/info`. The rest is the binary's \
         pages that PID 1 maps: the kernel maps them in 64 KiB windows around each fault, \
         and the static berth has the functions that run first in its `.text` \
         (`scripts/profile-layout`, recorded from the demo and the api, supervisor and \
         runtime scenarios, not from this bench), so those windows are few. The whole \
         binary stays in RAM in the initramfs either way: its size is in the Size table.\n"
    );
    let _ = writeln!(
        o,
        "| idle containers | RSS, MiB | PSS, MiB | private, MiB | anonymous, MiB | API RSS, MiB |\n\
         | --- | --- | --- | --- | --- | --- |"
    );
    let row = |o: &mut String, label: &str, x: &Value| {
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} | {} |",
            mib(&x["rss_kib"]),
            mib(&x["pss_kib"]),
            mib(&x["private_kib"]),
            mib(&x["anon_kib"]),
            mib(&x["api_rss_kib"])
        );
    };
    for k in ["0", "10", "100"] {
        row(o, k, &mm[format!("idle_{k}")]);
    }
    let x = &r["scale"]["memory"];
    if !x.is_null() {
        row(o, "200", x);
    }
    let boot_rss = &r["boot"]["berth"]["rss_kib_after_boot"];
    if !boot_rss.is_null() {
        let _ = writeln!(
            o,
            "\nFor comparison, just after booting the boot row's image (one container, no \
             network, 512 MiB), berth's RSS is {} MiB (median of the boots).",
            mib(&boot_rss["median"])
        );
    }
    let none = f(&mm["none_api_rss_kib"]);
    let zero = f(&mm["idle_0"]["rss_kib"]);
    if let (Some(none), Some(zero)) = (none, zero) {
        let kept = if none > zero * 1.25 {
            "the memory the containers took is not given back to the kernel"
        } else {
            "about what it used before the idle containers came"
        };
        let _ = writeln!(
            o,
            "\nAfter the manifest is reloaded to no container at all (the bench's own too), \
             berth's RSS is {:.2} MiB: {kept}.",
            none / 1024.0
        );
    }
    let _ = writeln!(
        o,
        "\ncontainerd is not measured. Debian 12's containerd package (1.6) installs about \
         96 MB (the daemon, `ctr`, the runc shims); in this bench it would go into the \
         guest's initramfs, which the guest holds in RAM, and every \
         container would add a `containerd-shim-runc-v2` process, so 100 idle containers \
         mean 100 more Go processes in a 1 GiB guest. That does not fit the bench's \
         20 minutes on this machine; it is left for a KVM host."
    );
}

fn size_section(o: &mut String, r: &Value) {
    let sz = &r["size"];
    let _ = writeln!(o, "\n## Size\n");
    if sz.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "The example image is `{}` built as `scripts/build-image` builds it ({}, {} modules).\n",
        sz["example"]
            .as_str()
            .map(|e| e.find("examples/").map_or(e, |i| &e[i..]))
            .unwrap_or(""),
        sz["compression"].as_str().unwrap_or(""),
        sz["modules"]
    );
    let _ = writeln!(o, "| | size |\n| --- | --- |");
    let _ = writeln!(
        o,
        "| static berth binary | {} |",
        bytes_mb(&sz["berth_bytes"])
    );
    let _ = writeln!(
        o,
        "| example kernel (vmlinuz) | {} |",
        bytes_mb(&sz["kernel_bytes"])
    );
    let _ = writeln!(
        o,
        "| example initramfs | {} (cpio: {}) |",
        bytes_mb(&sz["initramfs_bytes"]),
        bytes_mb(&sz["initramfs_cpio_bytes"])
    );
    let _ = writeln!(
        o,
        "| **example image, kernel + initramfs** | **{}** |",
        bytes_mb(&sz["image_bytes"])
    );
    let _ = writeln!(o, "| LinuxKit, published: base image | 35 MB |");
    let _ = writeln!(o, "| LinuxKit, published: ultra-minimal image | 13 MB |");
}

fn scale_section(o: &mut String, r: &Value) {
    let sc = &r["scale"];
    let _ = writeln!(o, "\n## Scale: 200 containers\n");
    if sc.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "200 busybox `sleep` containers on the bridge, added by one manifest reload to a \
         berth running none of them, in a guest of 1 GiB.\n"
    );
    let _ = writeln!(o, "| | |\n| --- | --- |");
    let _ = writeln!(
        o,
        "| reload answered after | {} ms |",
        n(&sc["reload_answer_ms"], 0)
    );
    let _ = writeln!(
        o,
        "| all 200 running after | {} ms |",
        n(&sc["all_running_ms"], 0)
    );
    let _ = writeln!(
        o,
        "| berth's CPU while they idle (PID 1's scheduler time) | {} ms in {} ms ({} %) |",
        n(&sc["idle_cpu_ms"], 2),
        n(&sc["idle_wall_ms"], 0),
        n(&sc["idle_cpu_percent"], 3)
    );
    let _ = writeln!(
        o,
        "| restart storm: 200 `POST .../restart` sent in | {} ms |",
        n(&sc["storm_posted_ms"], 0)
    );
    let _ = writeln!(
        o,
        "| restart storm: all 200 running again after | {} ms |",
        n(&sc["storm_all_running_ms"], 0)
    );
    let _ = writeln!(
        o,
        "| berth's RSS with 200 | {} MiB |",
        mib(&sc["memory"]["rss_kib"])
    );
}

fn callgrind_section(o: &mut String, r: &Value) {
    let cg = &r["callgrind"];
    let _ = writeln!(o, "\n## Instruction counts\n");
    if cg.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "`valgrind --tool=callgrind` on the host, each run twice: the counts barely move \
         from run to run (berth's hash maps are seeded at random, which moves a few \
         hundredths of a percent), so a change in them is a change in the code. The static berth is \
         the release build; the library paths run in `berth-hostbench`, built with the \
         `bench-tools` profile (release code without LTO, symbols kept), counted with \
         `--toggle-collect` on the function named.\n"
    );
    let _ = writeln!(o, "| what | instructions | spread |\n| --- | --- | --- |");
    for (_, v) in cg.as_object().into_iter().flatten() {
        let counts: Vec<String> = v["instructions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| group(c.as_u64().unwrap_or(0)))
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            v["what"].as_str().unwrap_or(""),
            counts.join(", "),
            match f(&v["spread_percent"]) {
                Some(0.0) => "none".to_owned(),
                Some(x) => format!("{x:.2} %"),
                None => "–".to_owned(),
            }
        );
    }
}

fn group(x: u64) -> String {
    let s = x.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

fn unpack_section(o: &mut String, r: &Value) {
    let u = &r["unpack"];
    let _ = writeln!(o, "\n## Image unpack\n");
    if u.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "On the host, as root: an OCI layout of {} MiB in {} files and {} gzip layers (made by \
         `berth-hostbench unpack`, `bench/src/bin/hostbench.rs`), imported and unpacked by berth's image store, and unpacked by `umoci unpack`, {} times each.\n",
        n(&u["image_mib"], 1),
        n(&u["files"], 0),
        u["layers"],
        u["berth_s"]["n"]
    );
    let _ = writeln!(o, "| | seconds | MiB/s |\n| --- | --- | --- |");
    let _ = writeln!(
        o,
        "| berth (import + unpack) | {} | {} |",
        mp(&u["berth_s"], 2),
        n(&u["berth_mib_s"], 0)
    );
    let _ = writeln!(
        o,
        "| umoci unpack | {} | {} |",
        mp(&u["umoci_s"], 2),
        n(&u["umoci_mib_s"], 0)
    );
}

fn ports_section(o: &mut String, r: &Value) {
    let p = &r["ports"];
    let _ = writeln!(o, "\n## Published ports\n");
    if p.is_null() {
        let _ = writeln!(o, "Not measured in this run.");
        return;
    }
    let _ = writeln!(
        o,
        "From the host through QEMU's user network (`hostfwd` on 127.0.0.1, `restrict=on`) to \
         a TCP sink (the guest helper) in a container: once behind a published port \
         (`ports = [\"9001:9000\"]`, the container on berth's bridge, nftables DNAT), once \
         with `network_mode = \"host\"`. Throughput: {} MiB per connection; connection rate: \
         {} sequential connections, each sending a byte and reading the sink's answer. \
         Rounds alternate. Both go through QEMU's user network, so the ratio, not the \
         absolute rate, is what the published port costs, within this machine's noise.\n",
        p["transfer_mib"], p["connections_per_round"]
    );
    let _ = writeln!(o, "| | MB/s | connections/s |\n| --- | --- | --- |");
    for (label, k) in [
        ("published port (bridge + DNAT)", "published"),
        ("host network", "host"),
    ] {
        let _ = writeln!(
            o,
            "| {label} | {} | {} |",
            mp(&p[k]["throughput_mb_s"], 1),
            mp(&p[k]["connections_per_s"], 1)
        );
    }
    let _ = writeln!(
        o,
        "| published / host | {} | {} |",
        ratio(
            &p["published"]["throughput_mb_s"]["median"],
            &p["host"]["throughput_mb_s"]["median"]
        ),
        ratio(
            &p["published"]["connections_per_s"]["median"],
            &p["host"]["connections_per_s"]["median"]
        )
    );
}

/// Where berth misses a goal: what the numbers above say about why.
fn misses_section(o: &mut String, r: &Value) {
    let missed: Vec<&Value> = r["goals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["pass"].as_bool() == Some(false))
        .collect();
    if missed.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Where berth misses, and where the time goes\n");
    for g in missed {
        let name = g["name"].as_str().unwrap_or("");
        let _ = writeln!(o, "- **{name}**: {}.", g["shown"].as_str().unwrap_or(""));
        if name.starts_with("PID 1 to first") {
            let mut steps: Vec<(String, f64)> = r["boot"]["berth"]["phases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p["name"].as_str()?.to_owned(), f(&p["ms"]["median"])?)))
                .collect();
            steps.sort_by(|a, b| b.1.total_cmp(&a.1));
            let list: Vec<String> = steps
                .iter()
                .take(6)
                .map(|(k, v)| {
                    format!(
                        "{} {v:.0} ms",
                        k.trim_start_matches("step: ").trim_start_matches("span: ")
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  Largest first: {}. (See the Boot tables: the spans overlap with the \
                 device modules loading beside them.)",
                list.join("; ")
            );
        }
        if name.starts_with("container start") {
            let st = &r["start"];
            let _ = writeln!(
                o,
                "  spawn → exec: berth {} ms, crun {} ms, runc {} ms, the unshare floor {} ms. \
                 berth's number includes its API request and its event loop; the floor is \
                 the kernel's part (namespaces, fork, exec) that no runtime avoids.",
                n(&st["berth"]["exec_ms"]["median"], 1),
                n(&st["crun"]["exec_ms"]["median"], 1),
                n(&st["runc"]["exec_ms"]["median"], 1),
                n(&st["unshare"]["exec_ms"]["median"], 1),
            );
        }
        if name.starts_with("static berth") {
            let _ = writeln!(
                o,
                "  The binary carries tokio, hyper and rustls (with ring) for the API and its \
                 remote mutual-TLS listener, rtnetlink and nftables for the network, and the \
                 OCI image code; shrinking it is tracked separately."
            );
        }
        if name.starts_with("berth's RSS") {
            let mm = &r["memory"];
            let slope = f(&mm["idle_100"]["rss_kib"])
                .zip(f(&mm["idle_10"]["rss_kib"]))
                .map_or("–".to_owned(), |(a, b)| format!("{:.0}", (a - b) / 90.0));
            let binary = f(&mm["idle_10"]["rss_kib"])
                .zip(f(&mm["idle_10"]["anon_kib"]))
                .map_or("–".to_owned(), |(r, a)| {
                    format!("{:.2}", (r - a) / 1024.0)
                });
            let _ = writeln!(
                o,
                "  RSS {} MiB with the bench's 5 containers, {} MiB with 10 idle more, {} MiB \
                 with 100: about {slope} KiB per idle container (from 10 to 100). With 10, \
                 {binary} MiB are the binary's own pages and {} MiB anonymous (heap, stacks).",
                mib(&mm["idle_0"]["rss_kib"]),
                mib(&mm["idle_10"]["rss_kib"]),
                mib(&mm["idle_100"]["rss_kib"]),
                mib(&mm["idle_10"]["anon_kib"]),
            );
        }
    }
}

fn method_section(o: &mut String) {
    let _ = writeln!(
        o,
        "\n## Method\n\n\
- **One run, one machine.** `scripts/bench` installs what it needs \
(`scripts/install-deps`), builds the static berth, the static guest helper \
(`bench/guest`) and the bench tools, then `berth-bench` builds every image and \
measures every row. The accelerator is KVM where the harness's short KVM probe \
boots a kernel under it, else TCG.\n\
- **Boot.** The berth image has one container (busybox, `network_mode = \"none\"`, \
memory/CPU/pids limits, berth's default seccomp) whose first program is the guest \
helper printing CLOCK_BOOTTIME. berth's PID 1 start and ready come from its own log \
(`starting as PID 1 at`, `ready in`). The baseline is LinuxKit-style: a busybox `sh` \
`/init` marks its first command, copies itself into a tmpfs and `switch_root`s \
(pivot_root cannot leave an initramfs; LinuxKit's init does the same, where berth binds the initramfs onto itself and moves the bind mount onto `/`), makes \
berth's boot mounts and cgroup layout, loads overlay, starts the device modules \
berth loads (virtio, button, evdev) in the background as berth does, and runs the \
same container with `crun run` from a bundle in the initramfs, with the OCI config \
below. The baseline's PID 1 start is the kernel's own `Run /init as init process` \
(the shell's start-up is its first span); berth's is berth's first clock reading, \
a moment after the kernel's exec of it, which favours berth by that moment.\n\
- **Container start.** One boot of berth's main bench image. A privileged \
container with `pid = \"host\"` runs the guest helper, which joins PID 1's mount, \
cgroup, IPC, UTS and network namespaces, so crun and runc run as they would on the \
host, with their cgroups under berth's own `containers` cgroup. crun and runc get a \
prepared busybox rootfs directory (as containerd would hand them one); berth mounts \
its overlay as part of its start. The OCI config (`bench/src/oci.rs`) has the \
namespaces, the cgroup limits, Docker's capabilities, masked paths, no_new_privs, \
and a seccomp filter from berth's own allow-list. Runs take turns; a first round \
warms the caches up and is dropped.\n\
- **Memory and scale** use the same boot, after the start rows, by reloading the \
manifest with more idle containers. The CPU figure is PID 1's time on the CPU \
(`/proc/1/schedstat`) over the idle interval.\n\
- **Numbers under TCG** are several times slower than on hardware, and the machine \
is shared: the run interleaves what it compares, so ratios hold better than \
absolute times."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_judge_what_was_measured() {
        let r = json!({
            "start": {"berth": {"exec_ms": {"median": 10.0}}, "crun": {"exec_ms": {"median": 100.0}}},
            "size": {"berth_bytes": 5_000_000, "image_bytes": 18_000_000},
        });
        let g = goals(&r);
        assert_eq!(g[0]["pass"], true);
        assert_eq!(g[1]["pass"], Value::Null);
        assert_eq!(g[3]["pass"], false);
        assert_eq!(g[4]["pass"], true);
        let md = markdown(&json!({"goals": g, "meta": {}}));
        assert!(md.contains("**miss**") && md.contains("not measured"));
    }

    #[test]
    fn groups_digits() {
        assert_eq!(group(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(group(123), "123");
    }
}
