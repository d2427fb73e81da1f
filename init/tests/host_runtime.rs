//! The container runtime on the host, as root: real namespaces, overlayfs,
//! pivot_root and exec of a busybox image built in the test. (cgroup limits
//! need the guest's pure cgroup v2; here containers go into the host's v2
//! hierarchy without controllers, which is enough for CLONE_INTO_CGROUP.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth::images::Store;
use berth::runtime::{Launch, NetSpec, Runtime, message, spec::StateDirs};
use berth::sys::Real;

/// clone3 from a multi-threaded test process: one spawn at a time, so no
/// other test thread holds a lock the child would need.
static SERIAL: Mutex<()> = Mutex::new(());

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "host runtime tests need root (scripts/test runs them as root)"
    );
}

/// Tars `rootfs` into a one-layer OCI image `busybox:latest` and imports
/// it, as berth imports any image.
fn import_busybox(store: &Store, rootfs: &Path, layout: &Path) {
    use berth_image::oci::layer::Compression;
    use berth_image::oci::spec::RunConfig;
    use berth_image::oci::write::{self, ImageBuild, Layout};
    let mut tree = write::Tree::new();
    tree.add_host_dir(rootfs, "").unwrap();
    let built = ImageBuild {
        layers: vec![(
            write::layer_blob(tree.to_tar(0).unwrap(), Compression::None).unwrap(),
            "busybox".into(),
        )],
        config: RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            ..RunConfig::default()
        },
        created: 0,
    }
    .finish()
    .unwrap();
    Layout::open(layout)
        .unwrap()
        .add("busybox:latest", &built)
        .unwrap();
    store.import_path(layout, None).unwrap();
}

struct Host {
    dir: tempfile::TempDir,
    runtime: Runtime,
}

impl Host {
    fn new() -> Host {
        Host::with_rootfs(|_| {})
    }

    /// A host whose busybox image is built from a directory that `tweak`
    /// may change first, then imported into the store as an OCI image.
    fn with_rootfs(tweak: impl FnOnce(&Path)) -> Host {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("src");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "cat", "ls", "echo", "hostname", "touch", "mount", "id", "wc", "head", "sleep",
            "tr", "grep", "true", "test",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        tweak(&rootfs);
        let store = Store::new(dir.path().join("images"));
        import_busybox(&store, &rootfs, &dir.path().join("layout"));
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cgroups = PathBuf::from(format!(
            "/sys/fs/cgroup/unified/berth-test-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&cgroups).unwrap();
        let runtime = Runtime {
            dirs: StateDirs {
                run: dir.path().join("run"),
                containers: dir.path().join("containers"),
                volumes: dir.path().join("volumes"),
            },
            store,
            cgroups,
            resolv_conf: "/etc/resolv.conf".into(),
            init_binary: static_berth(),
        };
        Host { dir, runtime }
    }

    fn container(&self, body: &str) -> berth_config::Container {
        let src = format!("version = 1\n[containers.c]\nimage = \"busybox\"\n{body}");
        let m = berth_config::parse(&src, "test.toml").unwrap();
        m.containers["c"].clone()
    }

    /// Runs a container to its end: (setup failure, exit code, stdout, stderr).
    fn run(&self, body: &str) -> (Option<message::Failure>, i32, String, String) {
        let c = self.container(body);
        let launch = {
            let _g = SERIAL.lock().unwrap();
            self.runtime.spawn(&Real, &c, &NetSpec::default()).unwrap()
        };
        // A child that failed already has closed its end: its failure
        // message is what counts.
        let _ = berth::runtime::release(&launch.sync);
        let Launch {
            pid,
            sync,
            stdout,
            stderr,
            cgroup,
            ..
        } = launch;
        let failure = read_sync(sync);
        let out = read_all(stdout);
        let err = read_all(stderr);
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
            other => panic!("unexpected {other:?}"),
        };
        for _ in 0..100 {
            if self.runtime.cleanup(&c.name, &cgroup) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (failure, code, out, err)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.runtime.cgroups);
    }
}

/// The static berth, as the image ships it: a container's init must run
/// without the host's dynamic loader. Built once by scripts/build-berth.
fn static_berth() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::process::Command::new(root.join("scripts/build-berth"))
            .current_dir(&root)
            .output()
            .expect("run scripts/build-berth");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

fn read_sync(fd: OwnedFd) -> Option<message::Failure> {
    let mut buf = vec![0u8; message::MAX];
    let n = nix::unistd::read(&fd, &mut buf).unwrap_or(0);
    message::decode(&buf[..n])
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s).unwrap();
    s
}

fn mountinfo_mentions(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(p.to_str().unwrap())
}

#[test]
fn a_container_is_pid_1_with_its_own_hostname_and_no_host_processes() {
    let h = Host::new();
    let (fail, code, out, err) = h.run(
        r#"command = ["sh", "-c", "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; id -u"]
hostname = "box""#,
    );
    assert_eq!(fail, None, "{err}");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "box");
    // sh and ls (and grep's pipeline partner): a handful, not the host's.
    let n: u32 = lines[2].parse().unwrap();
    assert!(n <= 4, "sees {n} processes");
    assert_eq!(lines[3], "0");
}

#[test]
fn a_missing_binary_fails_clearly_and_leaves_nothing_behind() {
    let h = Host::new();
    let (fail, code, _, _) = h.run(r#"command = ["/no/such/program"]"#);
    let f = fail.expect("a setup failure");
    assert_eq!(f.step, "exec");
    assert_eq!(
        f.to_string(),
        "exec /no/such/program: No such file or directory"
    );
    assert_eq!(code, 127);
    let (fail, _, _, _) = h.run(r#"command = ["nosuchcmd"]"#);
    assert_eq!(
        fail.unwrap().to_string(),
        "exec nosuchcmd: No such file or directory: executable file not found in $PATH"
    );
    // Nothing mounted on the host, no runtime files, no cgroup.
    assert!(!mountinfo_mentions(h.dir.path()));
    assert!(!h.runtime.dirs.run.join("c").exists());
    assert!(!h.runtime.cgroups.join("c").exists());
}

#[test]
fn read_only_root_rejects_writes_while_tmpfs_accepts_them() {
    let h = Host::new();
    let (fail, code, out, _) = h.run(
        r#"command = ["sh", "-c", "touch /x 2>&1; echo root=$?; touch /tmp/y && echo tmp=$?"]
read_only = true
tmpfs = ["/tmp"]"#,
    );
    assert_eq!(fail, None);
    assert_eq!(code, 0);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("root=1"), "{out}");
    assert!(out.contains("tmp=0"), "{out}");
}

#[test]
fn bind_volume_writes_reach_the_host() {
    let h = Host::new();
    let host_dir = h.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    let (fail, code, _, err) = h.run(&format!(
        r#"command = ["sh", "-c", "echo hello > /data/f"]
volumes = ["{}:/data"]"#,
        host_dir.display()
    ));
    assert_eq!((fail, code), (None, 0), "{err}");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("f")).unwrap(),
        "hello\n"
    );
    // A named volume is a directory under the state dir.
    let (fail, code, _, _) = h.run(
        r#"command = ["sh", "-c", "echo v > /v/f"]
volumes = ["vol:/v"]"#,
    );
    assert_eq!((fail, code), (None, 0));
    assert_eq!(
        std::fs::read_to_string(h.runtime.dirs.volumes.join("vol/f")).unwrap(),
        "v\n"
    );
}

#[test]
fn masked_and_read_only_paths() {
    let h = Host::new();
    // Masked files that this host's kernel has read as empty in a container.
    let masked: Vec<&str> = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    assert!(!masked.is_empty(), "no maskable /proc file on this host");
    assert!(std::fs::read_dir("/sys/firmware").unwrap().next().is_some());
    let script = format!(
        "for f in {}; do wc -c < $f; done; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname; echo procsys=$?; touch /sys/x; echo sys=$?",
        masked.join(" ")
    );
    let (fail, code, out, err) = h.run(&format!("command = [\"sh\", \"-c\", {script:?}]"));
    assert_eq!(fail, None, "{err}");
    assert_eq!(code, 0, "out={out} err={err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(lines[..masked.len() + 1].iter().all(|l| *l == "0"), "{out}");
    assert!(out.contains("procsys=1") && out.contains("sys=1"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn a_symlinked_proc_in_the_image_is_refused() {
    let h = Host::with_rootfs(|rootfs| {
        std::fs::remove_dir(rootfs.join("proc")).unwrap();
        std::os::unix::fs::symlink("/tmp", rootfs.join("proc")).unwrap();
    });
    let (fail, code, _, _) = h.run(r#"command = ["true"]"#);
    let f = fail.expect("refused");
    assert_eq!(f.step, "mount proc");
    assert_eq!(f.path.as_deref(), Some("proc"));
    assert_eq!(code, 127);
}

#[test]
fn environment_user_and_workdir() {
    let h = Host::new();
    let (fail, code, out, err) = h.run(
        r#"command = ["sh", "-c", "echo $FOO $HOME; id -u; id -g; pwd"]
environment = { FOO = "bar" }
user = "nobody"
working_dir = "/tmp""#,
    );
    assert_eq!((fail, code), (None, 0), "{err}");
    assert_eq!(out, "bar /\n65534\n65534\n/tmp\n");
}

#[test]
fn pid_host_shares_the_host_pid_namespace() {
    let h = Host::new();
    let me = std::process::id();
    let (fail, code, out, err) = h.run(&format!(
        r#"command = ["sh", "-c", "test -d /proc/{me} && echo sees-host; echo $$"]
pid = "host""#
    ));
    assert_eq!((fail, code), (None, 0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "sees-host");
    assert_ne!(lines[1], "1");
}

#[test]
fn init_runs_the_program_forwards_signals_and_returns_its_status() {
    let h = Host::new();
    let (fail, code, out, err) = h.run(
        r#"command = ["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $PPID; exit 7"]
init = true"#,
    );
    assert_eq!(fail, None, "{err}");
    assert_eq!(code, 7, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("berth-init /bin/sh sh -c"), "{out}");
    assert_eq!(lines[1], "1");

    // A shell as PID 1 ignores SIGTERM; under berth-init it gets it.
    let c = h.container("command = [\"sleep\", \"600\"]\ninit = true");
    let launch = {
        let _g = SERIAL.lock().unwrap();
        h.runtime.spawn(&Real, &c, &NetSpec::default()).unwrap()
    };
    berth::runtime::release(&launch.sync).unwrap();
    assert_eq!(read_sync(launch.sync), None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(launch.pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(launch.pid), None).unwrap();
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(launch.pid), 143)
    );
    h.runtime.cleanup(&c.name, &launch.cgroup);
}

/// `uid_map`: the container's root is host uid 100000. It still owns its
/// image's files (a shifted copy of the layer), can set its hostname and
/// create files, which land on the host owned by 100000; it cannot write a
/// host directory that only the host's root may write; and everything it
/// had mounted goes when it ends.
#[test]
fn a_user_namespace_makes_root_an_unprivileged_host_user() {
    let h = Host::with_rootfs(|rootfs| {
        for applet in ["stat", "chown"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
    });
    let host_dir = h.dir.path().join("hostonly");
    std::fs::create_dir_all(&host_dir).unwrap();
    let script = "id -u; cat /proc/self/uid_map; stat -c '%u:%g' / /etc/passwd; \
                  hostname inside && hostname; echo made > /made; chown 1000 /made; \
                  touch /host/x 2>/dev/null; echo host=$?; touch /vol/x; echo vol=$?";
    let (fail, code, out, err) = h.run(&format!(
        "command = [\"sh\", \"-c\", {script:?}]\nuid_map = \"0:100000:65536\"\nvolumes = [\"{}:/host\", \"named:/vol\"]\ncap_add = [\"SYS_ADMIN\"]",
        host_dir.display()
    ));
    assert_eq!((fail, code), (None, 0), "out={out} err={err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(&lines[2..4], ["0:0", "0:0"], "{out}");
    assert_eq!(lines[4], "inside");
    assert_eq!(
        lines[5], "host=1",
        "the host's root-only directory was writable"
    );
    assert_eq!(lines[6], "vol=0", "{err}");

    // On the host: what it made is owned by the mapped ids.
    let made =
        walk_find(&h.runtime.dirs.containers.join("c"), "made").expect("/made in the upper layer");
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&made).unwrap();
    assert_eq!((md.uid(), md.gid()), (101000, 100000));
    let vol = std::fs::metadata(h.runtime.dirs.volumes.join("named/x")).unwrap();
    assert_eq!((vol.uid(), vol.gid()), (100000, 100000));
    assert!(std::fs::read_dir(&host_dir).unwrap().next().is_none());
    // The shifted layer copy is in the store, owned by the mapped root.
    let shifted: Vec<PathBuf> = std::fs::read_dir(h.runtime.store.root().join("shifted"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(shifted.len(), 1);
    assert_eq!(
        std::fs::metadata(shifted[0].join("bin/busybox"))
            .unwrap()
            .uid(),
        100000
    );
    // Nothing left mounted on the host.
    assert!(!mountinfo_mentions(h.dir.path()), "a mount was left behind");
    assert!(!h.runtime.dirs.run.join("c").exists());

    // A second run shares the copy; a user outside the map is refused.
    let (fail, code, _, _) = h.run("command = [\"true\"]\nuid_map = \"0:100000:65536\"");
    assert_eq!((fail, code), (None, 0));
    let c = h.container("command = [\"true\"]\nuid_map = \"0:100000:1000\"\nuser = \"nobody\"");
    let e = {
        let _g = SERIAL.lock().unwrap();
        h.runtime.spawn(&Real, &c, &NetSpec::default()).unwrap_err()
    };
    assert_eq!(e.to_string(), "uid 65534 is not in the container's uid_map");
    assert!(!mountinfo_mentions(h.dir.path()));
}

/// `oom_score_adj` and rlimits reach the program with and without a user
/// namespace. (Lowering oom_score_adj and raising a hard limit need
/// CAP_SYS_RESOURCE, which this host's root lacks: the QEMU runtime
/// scenario checks those.)
#[test]
fn oom_score_adj_and_rlimits_with_and_without_a_user_namespace() {
    let h = Host::new();
    // SAFETY: getrlimit writes into the struct we pass.
    let mut own: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    let hard = own.rlim_max - 1;
    for userns in ["", "uid_map = \"0:100000:65536\""] {
        let (fail, code, out, err) = h.run(&format!(
            "command = [\"sh\", \"-c\", \"cat /proc/self/oom_score_adj; ulimit -Hn; ulimit -Sn\"]\noom_score_adj = 500\nulimits = {{ nofile = {{ soft = 512, hard = {hard} }} }}\n{userns}"
        ));
        assert_eq!((fail, code), (None, 0), "{userns}: out={out} err={err}");
        assert_eq!(out, format!("500\n{hard}\n512\n"), "{userns}");
    }
}

fn walk_find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir()
            && let Some(found) = walk_find(&p, name)
        {
            return Some(found);
        }
    }
    None
}
