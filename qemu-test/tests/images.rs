//! OCI images in a real guest: images made by tools nobody here wrote
//! (umoci, skopeo) as OCI layouts, OCI archives and docker-save archives,
//! shipped unpacked by the builder or imported by berth at boot; layers
//! shared between images; whiteouts; the builder's own images (busybox, a
//! Debian package with its libraries) with the image's HEALTHCHECK gating a
//! dependent; and hostile archives refused at boot with the store intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_image::ExtraFile;
use berth_qemu_test::Vm;
use berth_qemu_test::scenario::{self, HTTP_TIMEOUT};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory for this test's inputs.
fn work(name: &str) -> PathBuf {
    let d = scenario::images_dir()
        .parent()
        .unwrap()
        .join("image-inputs")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small root filesystem: static busybox and a few applets, files to
/// delete in a later layer.
fn rootfs(dir: &Path) {
    for d in ["bin", "etc", "opt/keep", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "ls", "grep", "head", "tr", "wget", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/motd"), "motd from umoci\n").unwrap();
    std::fs::write(dir.join("etc/deleted"), "should be gone\n").unwrap();
    std::fs::write(dir.join("opt/keep/a"), "a").unwrap();
    std::fs::write(dir.join("opt/keep/b"), "b").unwrap();
}

/// What each container prints: its motd, whether the whited-out file is
/// there, what the replaced directory holds, and its root's lower layers.
const PROBE: &str = "cat /etc/motd; test -e /etc/deleted && echo deleted-present || echo deleted-gone; \
                     echo keep=$(ls /opt/keep | tr '\\n' ' '); \
                     grep -o 'lowerdir=[^,]*' /proc/self/mountinfo | head -1; echo done";

/// The console lines a container printed, without berth's prefix.
fn output(vm: &Vm, name: &str) -> Vec<String> {
    let marker = format!(" {name} | ");
    vm.console()
        .lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest.to_string()))
        .collect()
}

fn wait_output(vm: &Vm, name: &str, text: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = output(vm, name);
        if out.iter().any(|l| l.contains(text)) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never printed {text:?}:\n{}",
            vm.console_tail(60)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn json(vm: &Vm, path: &str) -> Value {
    let (status, body) = vm.http("GET", path, None, HTTP_TIMEOUT).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn images_made_by_umoci_and_skopeo_run() {
    let w = work("tools");
    let layout = w.join("umoci");
    let src = w.join("src");
    rootfs(&src);
    // umoci: a layout, a base image from a directory, then a second layer
    // that deletes a file and replaces a directory's contents.
    sh(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    sh(Command::new("umoci").args(["new", "--image", &image("base")]));
    sh(Command::new("umoci")
        .args(["insert", "--image", &image("base")])
        .arg(&src)
        .arg("/"));
    let bundle = w.join("bundle");
    sh(Command::new("umoci")
        .args(["unpack", "--image", &image("base")])
        .arg(&bundle));
    let root = bundle.join("rootfs");
    std::fs::remove_file(root.join("etc/deleted")).unwrap();
    std::fs::remove_dir_all(root.join("opt/keep")).unwrap();
    std::fs::create_dir(root.join("opt/keep")).unwrap();
    std::fs::write(root.join("opt/keep/c"), "c").unwrap();
    sh(Command::new("umoci")
        .args(["repack", "--image", &image("app")])
        .arg(&bundle));
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &image("app"),
        "--config.env",
        "PATH=/bin",
        "--config.cmd",
        "sh",
    ]));
    // skopeo: the same image as an OCI layout with a full name, an OCI
    // archive and a docker-save archive.
    let oci = format!("oci:{}", image("app"));
    let skopeo_dir = w.join("skopeo");
    sh(Command::new("skopeo").args([
        "copy",
        &oci,
        &format!("oci:{}:example/skopeo:1.0", skopeo_dir.display()),
    ]));
    let ociarch = w.join("ociarch.tar");
    sh(Command::new("skopeo").args([
        "copy",
        &oci,
        &format!("oci-archive:{}:example/ociarch:1.0", ociarch.display()),
    ]));
    let docker = w.join("docker.tar");
    sh(Command::new("skopeo").args([
        "copy",
        &oci,
        &format!("docker-archive:{}:example/docker:1.0", docker.display()),
    ]));
    let inspect: Value = serde_json::from_str(&sh(Command::new("skopeo").args([
        "inspect",
        &format!("oci:{}:example/skopeo:1.0", skopeo_dir.display()),
    ])))
    .unwrap();
    let digest = inspect["Digest"].as_str().unwrap().to_string();

    let manifest = format!(
        r#"
version = 1
[host]
on_fatal = "poweroff"
[containers.umoci]
image = "umoci:app"
command = ["sh", "-c", "{PROBE}"]
[containers.skopeo]
image = "example/skopeo:1.0"
command = ["sh", "-c", "{PROBE}"]
[containers.pinned]
image = "example/skopeo@{digest}"
command = ["sh", "-c", "{PROBE}"]
[containers.ociarch]
image = "example/ociarch:1.0"
command = ["sh", "-c", "{PROBE}"]
[containers.docker]
image = "example/docker:1.0"
command = ["sh", "-c", "{PROBE}"]
"#
    );
    let images = [
        // umoci names its images by tag only: the name comes from here.
        scenario::image(&layout, Some("umoci")),
        scenario::image(&ociarch, None),
        // These two berth verifies and unpacks at boot.
        scenario::import(&skopeo_dir, None),
        scenario::import(&docker, None),
    ];
    let img = scenario::build_image_with_images("images-tools", &manifest, &[], &images).unwrap();
    let vm = scenario::boot_image("images-tools", &img, |c| c).unwrap();

    let mut lowers = Vec::new();
    for name in ["umoci", "skopeo", "pinned", "ociarch", "docker"] {
        let out = wait_output(&vm, name, "done");
        assert!(
            out.contains(&"motd from umoci".to_string()),
            "{name}: {out:?}"
        );
        assert!(out.contains(&"deleted-gone".to_string()), "{name}: {out:?}");
        assert!(out.contains(&"keep=c".to_string()), "{name}: {out:?}");
        let lower = out
            .iter()
            .find(|l| l.starts_with("lowerdir="))
            .unwrap_or_else(|| panic!("{name}: {out:?}"))
            .clone();
        lowers.push(lower);
    }
    // One image's layers, five ways in: one set of directories.
    assert!(lowers.iter().all(|l| *l == lowers[0]), "{lowers:#?}");
    assert_eq!(
        lowers[0].matches(':').count(),
        1,
        "two layers: {}",
        lowers[0]
    );
    // The boot imports found every layer already shipped.
    let console = vm.console();
    let imports: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("images: imported"))
        .collect();
    assert_eq!(imports.len(), 2, "{imports:#?}");
    for l in &imports {
        assert!(l.contains("0 layer(s) unpacked"), "{l}");
        assert!(l.contains("2 shared"), "{l}");
    }
    let listed = json(&vm, "/v1/images");
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap())
        .collect();
    for n in [
        "umoci:app",
        "umoci:base",
        "example/skopeo:1.0",
        "example/ociarch:1.0",
        "example/docker:1.0",
    ] {
        assert!(names.contains(&n), "{n} not in {listed:#}");
    }
    assert!(
        scenario::berth_problems(&console).is_empty(),
        "{:#?}",
        scenario::berth_problems(&console)
    );
    scenario::power_off(&vm).unwrap();
}

#[test]
fn the_builders_own_images_with_a_debian_program() {
    use berth_image::oci::layer::Compression;
    use berth_image::ocibuild::{self, LayerFrom, OciOptions};

    let w = work("builder");
    let www = w.join("www");
    std::fs::create_dir_all(www.join("www")).unwrap();
    std::fs::write(www.join("www/index.html"), "hello from mini_httpd\n").unwrap();
    let layout = w.join("layout");
    let cache = berth_image::kernel::cache_dir().unwrap();
    let mut config = ocibuild::default_config();
    config.cmd = Some(
        [
            "/usr/sbin/mini_httpd",
            "-D",
            "-p",
            "8080",
            "-d",
            "/www",
            "-u",
            "nobody",
        ]
        .map(String::from)
        .to_vec(),
    );
    config.healthcheck = ocibuild::parse_healthcheck(
        "CMD-SHELL:wget -q -O /dev/null http://127.0.0.1:8080/",
        Some(1_000_000_000),
    );
    config.stop_signal = Some("SIGINT".into());
    let base = OciOptions {
        out: layout.clone(),
        reference: "example/web:1.0".into(),
        layers: vec![
            LayerFrom::Busybox,
            LayerFrom::Deb("mini-httpd".into()),
            LayerFrom::Dir(www),
        ],
        config,
        compression: Compression::Gzip,
        created: 0,
        sources: berth_image::Sources::default(),
        cache,
    };
    ocibuild::build(&base).unwrap();
    ocibuild::build(&OciOptions {
        reference: "example/tools:1".into(),
        layers: vec![LayerFrom::Busybox],
        config: ocibuild::default_config(),
        ..base.clone()
    })
    .unwrap();

    let manifest = r#"
version = 1
[host]
on_fatal = "poweroff"
[containers.web]
image = "example/web:1.0"
network_mode = "host"
[containers.client]
image = "example/tools:1"
network_mode = "host"
depends_on = { web = { condition = "service_healthy" } }
command = ["sh", "-c", "wget -q -O - http://127.0.0.1:8080/; grep -o 'lowerdir=[^,]*' /proc/self/mountinfo | head -1; echo client-done"]
"#;
    let img = scenario::build_image_with_images(
        "images-builder",
        manifest,
        &[],
        &[scenario::image(&layout, None)],
    )
    .unwrap();
    let vm = scenario::boot_image("images-builder", &img, |c| c).unwrap();
    let out = wait_output(&vm, "client", "client-done");
    assert!(
        out.contains(&"hello from mini_httpd".to_string()),
        "{out:?}"
    );
    let listed = json(&vm, "/v1/images");
    let web = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "example/web:1.0")
        .unwrap_or_else(|| panic!("{listed:#}"))
        .clone();
    assert_eq!(web["layers"], 3);
    assert!(web["size_bytes"].as_u64().unwrap() > 3 << 20, "{web}");
    // The client's one layer is the web image's bottom one.
    let client_lower = out.iter().find(|l| l.starts_with("lowerdir=")).unwrap();
    let layer = client_lower.trim_start_matches("lowerdir=");
    assert!(!layer.contains(':'), "{client_lower}");
    // The image's STOPSIGNAL and HEALTHCHECK, the manifest having neither.
    let web_info = json(&vm, "/v1/containers/web");
    assert_eq!(web_info["config"]["stop_signal"], "SIGINT", "{web_info:#}");
    assert_eq!(
        web_info["config"]["healthcheck"]["test"][0], "CMD-SHELL",
        "{web_info:#}"
    );
    assert_eq!(
        web_info["config"]["healthcheck"]["interval_ms"], 1000,
        "{web_info:#}"
    );
    let row = json(&vm, "/v1/containers")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "web")
        .unwrap()
        .clone();
    assert_eq!(row["health"], "healthy", "{row:#}");
    assert!(
        scenario::berth_problems(&vm.console()).is_empty(),
        "{:#?}",
        scenario::berth_problems(&vm.console())
    );
    scenario::power_off(&vm).unwrap();
    let _ = layer;
}

/// A tar with one regular member.
fn tar_member(out: &mut Vec<u8>, path: &str, flag: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A docker-save archive of one image with one layer `layer`, named `name`.
fn docker_archive(name: &str, layer: &[u8], diff_id: &str) -> Vec<u8> {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_hex = berth_image::oci::Digest::of(config.as_bytes())
        .hex()
        .to_string();
    let manifest = format!(
        r#"[{{"Config":"{config_hex}.json","RepoTags":["{name}"],"Layers":["l/layer.tar"]}}]"#
    );
    let mut out = Vec::new();
    tar_member(&mut out, "manifest.json", b'0', "", manifest.as_bytes());
    tar_member(
        &mut out,
        &format!("{config_hex}.json"),
        b'0',
        "",
        config.as_bytes(),
    );
    tar_member(&mut out, "l/layer.tar", b'0', "", layer);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn hostile_archives_are_refused_at_boot() {
    // A layer that escapes through a symlink, with an honest DiffID.
    let mut evil = Vec::new();
    tar_member(&mut evil, "etc", b'2', "/etc", b"");
    tar_member(&mut evil, "etc/pwned", b'0', "", b"pwned\n");
    evil.extend_from_slice(&[0u8; 1024]);
    let evil_id = berth_image::oci::Digest::of(&evil).to_string();
    // A layer whose bytes do not match its DiffID.
    let mut honest = Vec::new();
    tar_member(&mut honest, "hello", b'0', "", b"hi\n");
    honest.extend_from_slice(&[0u8; 1024]);
    let wrong_id = berth_image::oci::Digest::of(b"something else").to_string();
    // Traversal.
    let mut dotdot = Vec::new();
    tar_member(&mut dotdot, "../../../etc/pwned2", b'0', "", b"pwned\n");
    dotdot.extend_from_slice(&[0u8; 1024]);
    let dotdot_id = berth_image::oci::Digest::of(&dotdot).to_string();
    let extra = [
        (
            "00-symlink.tar",
            docker_archive("evil/symlink:1", &evil, &evil_id),
        ),
        (
            "01-digest.tar",
            docker_archive("evil/digest:1", &honest, &wrong_id),
        ),
        (
            "02-dotdot.tar",
            docker_archive("evil/dotdot:1", &dotdot, &dotdot_id),
        ),
    ]
    .map(|(name, contents)| ExtraFile {
        path: format!("/usr/lib/berth/import/{name}"),
        contents,
        mode: 0o644,
    });
    let manifest = r#"
version = 1
[host]
on_fatal = "poweroff"
[containers.check]
image = "busybox:latest"
volumes = ["/etc:/hostetc:ro", "/var/lib/berth/images:/store:ro"]
command = ["sh", "-c", "ls /hostetc/pwned /hostetc/pwned2 2>&1; echo layers=$(ls /store/layers | wc -l) tmp=$(ls /store/tmp | wc -l) images=$(ls /store/images | wc -l); echo check-done"]
"#;
    let img = scenario::build_image_with("images-hostile", manifest, &extra).unwrap();
    let vm = scenario::boot_image("images-hostile", &img, |c| c).unwrap();
    let out = wait_output(&vm, "check", "check-done");
    assert!(
        out.iter().any(|l| l == "layers=0 tmp=0 images=0"),
        "the store is not clean: {out:?}"
    );
    assert!(
        out.iter().filter(|l| l.contains("No such file")).count() == 2,
        "something escaped: {out:?}"
    );
    let console = vm.console();
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("berth: ERROR") && l.contains("images:"))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].contains("image evil/symlink:1: layer blob l/layer.tar refused")
            && errors[0].contains("passes through a symlink"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("image evil/digest:1") && errors[1].contains("DiffID"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("image evil/dotdot:1") && errors[2].contains("`..`"),
        "{}",
        errors[2]
    );
    scenario::power_off(&vm).unwrap();
}
