//! Storage in a real guest (issue 6), with data disks made here by
//! `mkfs.ext4` (e2fsprogs) on raw files, attached as virtio-blk drives:
//!
//! - state across boots: a named volume read back after `berth reboot`
//!   and after a cold restart of QEMU; a `persist = true` writable layer
//!   kept and another discarded; a container that writes and fsyncs a file
//!   from its SIGTERM handler finds it after the reboot; berth's own log
//!   file kept; the filesystem unmounted clean;
//! - power cuts: QEMU killed with SIGKILL at random moments while a
//!   container appends and fsyncs records and berth saves its address book
//!   (a reload at each cut); after each of 20 cuts the guest boots, the
//!   filesystem on the GPT partition mounts, no acknowledged record is
//!   missing or torn, berth's state files read without a complaint, and at
//!   the end `e2fsck -fn` finds the filesystem clean;
//! - a full disk: berth keeps running and says so once, another container
//!   goes on, and space comes back when the writer is removed;
//! - no data device, and one that never appears: state in memory, boot
//!   goes on, `GET /v1/system/info` says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use berth_qemu_test::scenario::{self, BOOT_TIMEOUT, HTTP_TIMEOUT, Image, READY, berth_problems};
use berth_qemu_test::{Disk, Vm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// The label every data disk here has.
const LABEL: &str = "berth-data";

/// Runs a host tool; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw disk of `mib` MiB that is one ext4 filesystem labelled `label`.
fn ext4_disk(dir: &Path, mib: u64, label: &str) -> PathBuf {
    let path = dir.join("data.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label])
        .arg(&path));
    path
}

/// A GPT disk of `mib` MiB: partition 1 an 8 MiB vfat filesystem labelled
/// `ESP`, partition 2 the rest, ext4 labelled `label`. Returns the disk
/// and the byte offset of partition 2 (for e2fsprogs' `FILE?offset=`).
fn gpt_disk(dir: &Path, mib: u64, label: &str) -> (PathBuf, u64) {
    let path = dir.join("gpt.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let table = "label: gpt\nstart=2048, size=8M, type=U, name=esp\nsize=+, type=L, name=data\n";
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (util-linux)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), table.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "sfdisk");
    let json: Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(&path))).unwrap();
    let parts = &json["partitiontable"]["partitions"];
    let sectors = |i: usize, k: &str| parts[i][k].as_u64().unwrap();
    run(Command::new("mkfs.vfat")
        .args(["-n", "ESP", "--offset"])
        .arg(sectors(0, "start").to_string())
        .arg(&path)
        .arg((sectors(0, "size") / 2).to_string()));
    let offset = sectors(1, "start") * 512;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-E"])
        .arg(format!("offset={offset}"))
        .arg(&path)
        .arg(format!("{}k", sectors(1, "size") / 2)));
    (path, offset)
}

/// A manifest with the data device, then `rest`.
fn with_data(rest: &str) -> String {
    format!("version = 1\n[host.storage]\ndata = {{ device = \"LABEL={LABEL}\" }}\n{rest}")
}

fn info(vm: &Vm) -> Value {
    let (status, body) = vm
        .http("GET", "/v1/system/info", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `/v1/system/info` once the API answers (after a reboot, say).
fn info_when_up(vm: &Vm) -> Value {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        match vm.http("GET", "/v1/system/info", None, Duration::from_secs(5)) {
            Ok((200, body)) => return serde_json::from_str(&body).unwrap(),
            other if Instant::now() > deadline => panic!("API: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The console of the `n`th boot (1-based) in this QEMU.
fn boot_console(vm: &Vm, n: usize) -> String {
    let console = vm.console();
    let starts: Vec<usize> = console
        .match_indices("starting as PID 1")
        .map(|(i, _)| i)
        .collect();
    let Some(&from) = starts.get(n - 1) else {
        return String::new();
    };
    let to = starts.get(n).copied().unwrap_or(console.len());
    console[from..to].to_string()
}

/// Waits until the `n`th boot's console has every one of `texts`.
fn wait_boot(vm: &Vm, n: usize, texts: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = boot_console(vm, n);
        let missing: Vec<&&str> = texts.iter().filter(|t| !c.contains(**t)).collect();
        if missing.is_empty() {
            return c;
        }
        assert!(
            Instant::now() < deadline && vm.exit_status().is_none(),
            "boot {n} never showed {missing:?}:\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// berth's warnings and errors, without the one about a container's
/// output outrunning the console (its lines are still in its log file).
fn problems(console: &str) -> Vec<String> {
    berth_problems(console)
        .into_iter()
        .filter(|l| !l.contains("faster than the console shows"))
        .collect()
}

// ---- state across reboots -------------------------------------------------

/// `counter` counts boots in a named volume; `kept` and `fresh` count
/// lines they add to their root filesystem, with and without `persist`;
/// `graceful` writes and fsyncs its last words from its SIGTERM handler
/// and reads them (then removes them) at its next start.
const ACROSS: &str = r#"
[containers.counter]
image = "busybox:latest"
volumes = ["counts:/data"]
init = true
command = ["sh", "-c", '''n=$(cat /data/boots 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /data/boots; sync /data/boots; echo boot-count $n; exec sleep 3600''']

[containers.kept]
image = "busybox:latest"
persist = true
init = true
command = ["sh", "-c", '''echo x >> /layer; echo layer-lines $(wc -l < /layer); exec sleep 3600''']

[containers.fresh]
image = "busybox:latest"
init = true
command = ["sh", "-c", '''echo x >> /layer; echo layer-lines $(wc -l < /layer); exec sleep 3600''']

[containers.graceful]
image = "busybox:latest"
volumes = ["last-words:/data"]
stop_grace_period = "30s"
command = ["sh", "-c", '''
if [ -f /data/said ]; then echo "found: $(cat /data/said)"; rm /data/said; sync /data; else echo "found: nothing"; fi
trap 'sleep 1; echo goodbye > /data/said; sync /data/said; echo wrote last words; exit 0' TERM
echo listening
while true; do sleep 1; done
''']
"#;

/// The filesystem on `image` (at `offset`) was unmounted clean: its state
/// is clean and its journal needs no recovery.
fn assert_clean(image: &Path, offset: u64) {
    let spec = format!("{}?offset={offset}", image.display());
    let out = run(Command::new("dumpe2fs").arg("-h").arg(&spec));
    assert!(
        out.lines()
            .any(|l| l.starts_with("Filesystem state:") && l.trim_end().ends_with(" clean")),
        "{out}"
    );
    let features = out
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap_or_default();
    assert!(!features.contains("needs_recovery"), "{features}");
}

#[test]
fn volumes_and_persistent_layers_survive_reboot_and_cold_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = ext4_disk(dir.path(), 64, LABEL);
    let image = scenario::build_image("storage-across", &with_data(ACROSS)).unwrap();
    let vm = scenario::boot_image("storage-across", &image, |c| {
        c.no_reboot(false).disk(Disk::raw(&disk))
    })
    .unwrap();
    let first = wait_boot(
        &vm,
        1,
        &[
            "data partition /dev/vda (ext4 LABEL=berth-data",
            "counter | boot-count 1",
            "kept | layer-lines 1",
            "fresh | layer-lines 1",
            "graceful | found: nothing",
            "graceful | listening",
        ],
    );
    assert!(first.contains("mounted on /var/lib/berth"), "{first}");
    let s = &info(&vm)["storage"];
    assert_eq!(s["state"], "mounted", "{s:#}");
    assert_eq!(s["source"], "/dev/vda", "{s:#}");
    assert_eq!(s["mount"], "/var/lib/berth", "{s:#}");
    assert!(
        s["filesystem"]
            .as_str()
            .unwrap()
            .starts_with("ext4 LABEL=berth-data UUID="),
        "{s:#}"
    );
    assert!(s["free_bytes"].as_u64().unwrap() > 0, "{s:#}");
    assert_eq!(s["full"], false, "{s:#}");

    // berth reboot: the SIGTERM handler's file is written before the
    // partition is unmounted, and the second boot finds everything.
    let (status, body) = vm
        .http("POST", "/v1/system/reboot", None, HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let second = wait_boot(
        &vm,
        2,
        &[
            "counter | boot-count 2",
            "kept | layer-lines 2",
            "fresh | layer-lines 1",
            "graceful | found: goodbye",
            READY,
        ],
    );
    let first = boot_console(&vm, 1);
    let words = first.find("graceful | wrote last words").expect(&first);
    let unmounted = first.find("berth: power: unmounted ").expect(&first);
    assert!(words < unmounted, "{first}");
    assert!(!first.contains("remounted read-only"), "{first}");
    assert!(
        second.contains("discarded the writable layers of 3 container(s) without persist = true"),
        "{second}"
    );
    assert_eq!(info_when_up(&vm)["storage"]["state"], "mounted");

    // A clean power-off, then a cold start of a new QEMU on the same disk.
    let exit = scenario::power_off(&vm).unwrap();
    assert!(exit.success(), "{exit}");
    let mut consoles = vm.console();
    drop(vm);
    assert_clean(&disk, 0);
    let vm =
        scenario::boot_image("storage-across-cold", &image, |c| c.disk(Disk::raw(&disk))).unwrap();
    wait_boot(
        &vm,
        1,
        &[
            "counter | boot-count 3",
            "kept | layer-lines 3",
            "fresh | layer-lines 1",
            "graceful | found: goodbye",
        ],
    );
    let exit = scenario::power_off(&vm).unwrap();
    assert!(exit.success(), "{exit}");
    consoles += &vm.console();
    drop(vm);
    assert_clean(&disk, 0);
    assert_eq!(problems(&consoles), Vec::<String>::new(), "{consoles}");

    // berth's own log file is on the partition, with all three boots.
    let log = run(Command::new("debugfs")
        .args(["-R", "cat /log/berth.log"])
        .arg(&disk));
    assert_eq!(log.matches(" berth ready in ").count(), 3, "{log}");
    assert!(log.contains("requested through the API: reboot"), "{log}");
    let counter = run(Command::new("debugfs")
        .args(["-R", "cat /log/counter.log"])
        .arg(&disk));
    assert_eq!(
        counter.matches(" stdout boot-count ").count(),
        3,
        "{counter}"
    );
}

// ---- power cuts -----------------------------------------------------------

/// Checks the record files of earlier boots (`CHECK rec.N good=G
/// lines=L tail=T`: G records in sequence from the first, L lines in all,
/// and what follows the good ones: `none`, `torn` (one short line, the
/// record being written at the cut) or `bad`), then appends fixed-size
/// records to a new file, each fsynced (by `dd conv=fsync`) before it is
/// acknowledged (`ACK N I`). (Numbers are compared as text: busybox awk
/// reads `000010` as octal.)
const APPENDER: &str = r#"
cd /data
for f in rec.*; do
  [ -e "$f" ] || continue
  awk -v f="$f" 'BEGIN { good = 0; bad = 0 }
    { n++; if (!bad && length($0) == 63 && $1 == "rec" && $3 == sprintf("%06d", good + 1)) good++; else if (!bad) { bad = 1; first = $0 } }
    END { tail = n == good ? "none" : (n == good + 1 && length(first) < 63 ? "torn" : "bad");
          printf "CHECK %s good=%d lines=%d tail=%s\n", f, good, n, tail }' "$f"
done
b=$(ls rec.* 2>/dev/null | wc -l); b=$((b + 1)); f=$(printf 'rec.%04d' $b)
pad=$(printf '%047d' 0 | tr 0 x)
echo "START $b"
i=0
while true; do
  i=$((i + 1))
  printf 'rec %04d %06d %s\n' $b $i $pad | dd of=$f oflag=append conv=notrunc,fsync status=none || { echo APPEND FAILED; exit 1; }
  echo "ACK $b $i"
  usleep 20000
done
"#;

fn cut_manifest(extra: bool) -> String {
    let mut m = with_data(&format!(
        r#"
[containers.appender]
image = "busybox:latest"
volumes = ["records:/data"]
command = ["sh", "-c", '''{APPENDER}''']
"#
    ));
    if extra {
        m += r#"
[containers.extra]
image = "busybox:latest"
command = ["sleep", "3600"]
init = true
"#;
    }
    m
}

/// A small xorshift generator: the cut times, reproducible from the seed
/// the test prints (`BERTH_CUT_SEED` replays one).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `ACK N I` lines in `console`: the highest I of each file N.
fn acks(console: &str, into: &mut BTreeMap<u32, u32>) {
    for l in console.lines() {
        let Some((_, rest)) = l.split_once(" appender | ACK ") else {
            continue;
        };
        let mut w = rest.split_whitespace();
        if let (Some(Ok(n)), Some(Ok(i))) = (w.next().map(str::parse), w.next().map(str::parse)) {
            let e = into.entry(n).or_insert(0);
            *e = (*e).max(i);
        }
    }
}

/// Checks a boot's `CHECK` lines against the records acknowledged before:
/// every acknowledged record is there, whole and in order.
fn verify(console: &str, acked: &BTreeMap<u32, u32>, boot: usize) {
    let mut checked = BTreeMap::new();
    for l in console.lines() {
        let Some((_, rest)) = l.split_once(" appender | CHECK rec.") else {
            continue;
        };
        let rest = rest.trim_end();
        let field = |k: &str| -> u32 {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        };
        let n: u32 = rest[..4].parse().unwrap();
        assert!(!rest.ends_with("tail=bad"), "boot {boot}: {l}");
        checked.insert(n, (field("good="), field("lines=")));
    }
    for (n, want) in acked {
        let (good, lines) = checked.get(n).unwrap_or_else(|| {
            panic!("boot {boot}: rec.{n:04} with {want} acknowledged records is gone")
        });
        assert!(
            good >= want,
            "boot {boot}: rec.{n:04}: {want} records acknowledged, {good} intact in order ({lines} lines)"
        );
    }
}

/// A task stuck on I/O (a disk that stopped answering) is reported on the
/// console with its stack after 20 s, well within the test's waits.
const HUNG_TASKS: &str = "sysctl.kernel.hung_task_timeout_secs=20";

#[test]
fn power_cuts_lose_no_fsynced_record_and_no_state() {
    const CUTS: usize = 20;
    let seed = std::env::var("BERTH_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("power cuts: BERTH_CUT_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (disk, offset) = gpt_disk(dir.path(), 64, LABEL);
    let image: Image = scenario::build_image("storage-cuts", &cut_manifest(false)).unwrap();
    let extra = cut_manifest(true);
    let plain = cut_manifest(false);
    let started = Instant::now();
    let mut acked: BTreeMap<u32, u32> = BTreeMap::new();
    let mut verified_boots: u32 = 0;
    let mut to_first_record = Duration::ZERO;
    for cut in 0..=CUTS {
        let launched = Instant::now();
        let vm = scenario::launch_image(&format!("storage-cut-{cut}"), &image, |c| {
            c.disk(Disk::raw(&disk)).append(HUNG_TASKS)
        })
        .unwrap();
        let last = cut == CUTS;
        // One cut in four lands within 2.5 s of PID 1's start (the journal
        // replay, the mount, berth's boot-time writes); the others while
        // records are being appended, after a reload that makes berth save
        // its address book.
        let during_boot = !last && cut % 4 == 3;
        if during_boot {
            vm.wait_for("starting as PID 1", WAIT).unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(2500)));
        } else {
            vm.wait_for(" appender | ACK ", WAIT).unwrap();
            to_first_record += launched.elapsed();
            let console = boot_console(&vm, 1);
            assert!(
                console.contains("data partition /dev/vda2 (ext4 LABEL=berth-data"),
                "cut {cut}: {console}"
            );
            verified_boots += 1;
            verify(&console, &acked, cut);
            assert_eq!(
                problems(&console),
                Vec::<String>::new(),
                "cut {cut}: {console}"
            );
            if !last {
                // A container added (an address saved), and every other
                // time removed again (released, saved).
                let mut bodies = vec![&extra];
                if cut % 2 == 1 {
                    bodies.push(&plain);
                }
                for body in bodies {
                    let (status, reply) = vm
                        .http("POST", "/v1/system/reload", Some(body), HTTP_TIMEOUT)
                        .unwrap();
                    assert_eq!(status, 200, "{reply}");
                }
                std::thread::sleep(Duration::from_millis(rng.below(1000)));
            }
        }
        if last {
            break;
        }
        vm.kill();
        acks(&vm.console(), &mut acked);
    }
    // The last boot: everything checked; then an orderly power-off leaves
    // a filesystem that e2fsck finds clean.
    let vm = scenario::launch_image("storage-cut-final", &image, |c| {
        c.disk(Disk::raw(&disk)).append(HUNG_TASKS)
    })
    .unwrap();
    vm.wait_for(" appender | ACK ", WAIT).unwrap();
    let console = boot_console(&vm, 1);
    verify(&console, &acked, CUTS + 1);
    assert_eq!(problems(&console), Vec::<String>::new(), "{console}");
    let s = &info(&vm)["storage"];
    assert_eq!(s["source"], "/dev/vda2", "{s:#}");
    scenario::power_off(&vm).unwrap();
    drop(vm);
    let spec = format!("{}?offset={offset}", disk.display());
    run(Command::new("e2fsck").arg("-fn").arg(&spec));
    assert_clean(&disk, offset);
    let records: u32 = acked.values().sum();
    eprintln!(
        "power cuts: {CUTS} cuts, {verified_boots} boots checked, {records} records acknowledged in {} files, {:.0} s ({:.1} s from launch to the first record)",
        acked.len(),
        started.elapsed().as_secs_f64(),
        to_first_record.as_secs_f64() / f64::from(verified_boots.max(1))
    );
    assert!(acked.len() >= CUTS / 2, "too few boots appended: {acked:?}");
}

// ---- a full disk ----------------------------------------------------------

const FULL: &str = r#"
[containers.watcher]
image = "busybox:latest"
volumes = ["/init:/usr/local/bin/berth:ro", "/run/berth:/run/berth"]
command = ["berth", "--json", "events"]
init = true

[containers.ticker]
image = "busybox:latest"
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]

[containers.filler]
image = "busybox:latest"
init = true
command = ["sh", "-c", "sleep 3; dd if=/dev/zero of=/fill bs=1M; echo filler done; exec sleep 3600"]
"#;

/// The last `tick N` on the console.
fn last_tick(vm: &Vm) -> u64 {
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(" ticker | tick ")?.1.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn wait_tick_after(vm: &Vm, n: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = last_tick(vm);
        if t > n {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "ticker stopped at {n}:\n{}",
            vm.console_tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_data_partition_degrades_berths_writes_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = ext4_disk(dir.path(), 32, LABEL);
    let manifest = with_data(FULL);
    let vm = scenario::boot("storage-full", &manifest, |c| c.disk(Disk::raw(&disk))).unwrap();
    wait_boot(&vm, 1, &["filler ! dd: ", "filler | filler done"]);
    let line = vm.wait_for("/var/lib/berth is full (", WAIT).unwrap();
    assert!(line.contains("berth: ERROR storage: "), "{line}");
    assert!(line.contains("containers go on"), "{line}");
    wait_boot(&vm, 1, &["watcher | {", "\"event\":\"disk_full\""]);

    // berth answers and the ticker goes on, though nothing can be logged.
    let t = wait_tick_after(&vm, last_tick(&vm));
    let t = wait_tick_after(&vm, t + 2);
    let s = &info(&vm)["storage"];
    assert_eq!(s["full"], true, "{s:#}");
    assert!(s["free_bytes"].as_u64().unwrap() < 1 << 20, "{s:#}");
    let console = vm.console();
    assert_eq!(
        console.matches(" is full (").count(),
        1,
        "one report:\n{console}"
    );

    // Removing the writer gives the space back, and berth says so once.
    let without: String = manifest[..manifest.find("[containers.filler]").unwrap()].to_string();
    let (status, body) = vm
        .http("POST", "/v1/system/reload", Some(&without), HTTP_TIMEOUT)
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let line = vm
        .wait_for("/var/lib/berth has room again (", WAIT)
        .unwrap();
    assert!(
        line.contains(" write(s) were dropped while it was full"),
        "{line}"
    );
    wait_boot(&vm, 1, &["\"event\":\"disk_ok\""]);
    wait_tick_after(&vm, t);
    let s = &info(&vm)["storage"];
    assert_eq!(s["full"], false, "{s:#}");
    assert!(s["free_bytes"].as_u64().unwrap() > 16 << 20, "{s:#}");
    let console = vm.console();
    assert_eq!(
        problems(&console),
        [console
            .lines()
            .find(|l| l.contains(" is full ("))
            .unwrap()
            .to_string()],
        "the full disk is berth's only complaint"
    );
    let exit = scenario::power_off(&vm).unwrap();
    assert!(exit.success(), "{exit}");
    drop(vm);
    // The ticker's log has lines from before and after the episode.
    let log = run(Command::new("debugfs")
        .args(["-R", "cat /log/ticker.log"])
        .arg(&disk));
    assert!(log.contains(" stdout tick 1\n"), "{log}");
    assert!(log.contains(&format!(" stdout tick {}\n", t + 1)), "{log}");
}

// ---- no data device, or a missing one -------------------------------------

const IDLE: &str = r#"
[containers.idle]
image = "busybox:latest"
volumes = ["scratch:/data"]
command = ["sh", "-c", "echo kept in memory > /data/x; cat /data/x; exec sleep 3600"]
init = true
"#;

#[test]
fn without_a_data_device_state_is_kept_in_memory() {
    let manifest = format!("version = 1\n{IDLE}");
    let vm = scenario::boot("storage-none", &manifest, |c| c).unwrap();
    wait_boot(
        &vm,
        1,
        &[
            "berth: storage: no data device (host.storage.data): volumes, images, logs and state are kept in memory and lost at power-off",
            "idle | kept in memory",
        ],
    );
    let s = &info(&vm)["storage"];
    assert_eq!(s["state"], "memory", "{s:#}");
    assert_eq!(s["device"], Value::Null, "{s:#}");
    assert_eq!(s["mount"], "/var/lib/berth", "{s:#}");
    let console = vm.console();
    assert_eq!(problems(&console), Vec::<String>::new(), "{console}");
    scenario::power_off(&vm).unwrap();
}

#[test]
fn a_data_device_that_never_appears_is_an_error_and_boot_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A GPT disk whose partitions have other labels.
    let (disk, _) = gpt_disk(dir.path(), 40, "other");
    let manifest = with_data(IDLE);
    let started = Instant::now();
    let vm = scenario::boot("storage-missing", &manifest, |c| c.disk(Disk::raw(&disk))).unwrap();
    let console = wait_boot(&vm, 1, &["idle | kept in memory"]);
    assert!(started.elapsed() >= Duration::from_secs(10));
    let errors = problems(&console);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    for part in [
        "berth: ERROR storage: data device LABEL=berth-data: not found after 10 s among the block devices: ",
        "/dev/vda (no known filesystem)",
        "/dev/vda1 (vfat LABEL=ESP UUID=",
        "/dev/vda2 (ext4 LABEL=other UUID=",
        "; state is kept in memory and lost at power-off",
    ] {
        assert!(e.contains(part), "{part:?} not in {e}");
    }
    let s = &info(&vm)["storage"];
    assert_eq!(s["state"], "failed", "{s:#}");
    assert_eq!(s["device"], "LABEL=berth-data", "{s:#}");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .starts_with("not found after 10 s"),
        "{s:#}"
    );
    scenario::power_off(&vm).unwrap();
}
