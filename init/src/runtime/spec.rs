//! A container's spec: the manifest's entry and its image's defaults,
//! resolved into exactly what the child needs (argv, environment, working
//! directory, mounts, namespaces, limits), with Docker's precedence rules.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_config::{Container, NetworkMode, VolumeSource};

use super::rootfs::UserMount;
use crate::images::Image;

/// The PATH a container gets when neither image nor manifest sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where berth keeps per-container runtime files (on /run).
pub const RUN_DIR: &str = "/run/berth/containers";

/// Why a spec cannot be made.
#[derive(Debug, thiserror::Error, displaydoc::Display)]
pub enum Error {
    /// no command: neither the manifest nor image {image} gives one
    NoCommand {
        /// The image.
        image: String,
    },
    /// env_file {path}: {detail}
    EnvFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// Where berth keeps state; the data partition when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDirs {
    /// Per-container runtime files (tmpfs).
    pub run: PathBuf,
    /// Writable layers: `<containers>/<name>/{upper,work}`.
    pub containers: PathBuf,
    /// Named volumes: `<volumes>/<name>`.
    pub volumes: PathBuf,
}

impl Default for StateDirs {
    fn default() -> Self {
        let layout = crate::storage::layout();
        StateDirs {
            run: RUN_DIR.into(),
            containers: layout.containers(),
            volumes: layout.volumes(),
        }
    }
}

/// The root's mount point in a container's runtime directory.
pub const ROOTFS: &str = "rootfs";

/// A container, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Its name.
    pub name: String,
    /// Image layers, top first.
    pub lowers: Vec<PathBuf>,
    /// The writable layer's directories (upper, work). A read-only
    /// container gets a throwaway one on /run, where only the mount points
    /// berth makes land; its root is remounted read-only before it runs.
    pub upper: (PathBuf, PathBuf),
    /// Whether the root is read-only.
    pub read_only: bool,
    /// Where the root is assembled (a directory on the host).
    pub rootfs: PathBuf,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The environment, `KEY=value`, sorted by key.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// The user as the image or manifest names it, resolved at start.
    pub user: Option<berth_config::User>,
    /// Whether the container gets a new network namespace (bridge, none);
    /// host mode keeps the host's, service mode joins another container's.
    pub own_netns: bool,
    /// Volumes and tmpfs mounts, resolved to host paths.
    pub mounts: Vec<UserMount>,
    /// Files berth writes for it, as (host file, path inside, contents).
    pub files: Vec<(PathBuf, PathBuf, String)>,
}

/// Splits `KEY=value` (a bare `KEY` has an empty value).
fn split_env(kv: &str) -> (String, String) {
    match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (kv.to_string(), String::new()),
    }
}

/// The argv from Docker's rules: the manifest's entrypoint replaces the
/// image's and drops the image's CMD; the manifest's command replaces CMD.
pub fn argv(c: &Container, image: &Image) -> Result<Vec<String>, Error> {
    let (entrypoint, cmd) = match &c.entrypoint {
        Some(ep) => (ep.clone(), c.command.clone().unwrap_or_default()),
        None => (
            image.config.entrypoint.clone().unwrap_or_default(),
            c.command
                .clone()
                .or_else(|| image.config.cmd.clone())
                .unwrap_or_default(),
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(Error::NoCommand {
            image: image.reference.clone(),
        });
    }
    Ok(argv)
}

/// The environment: the image's, then env files, then `environment`; PATH
/// and HOSTNAME filled in when missing.
pub fn env(c: &Container, image: &Image, env_files: &[(String, String)]) -> Vec<String> {
    let mut env: BTreeMap<String, String> = image.config.env.iter().map(|e| split_env(e)).collect();
    env.extend(env_files.iter().cloned());
    env.extend(c.environment.clone());
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    if let Some(h) = &c.hostname {
        env.entry("HOSTNAME".into()).or_insert_with(|| h.clone());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Reads the container's env files.
pub fn read_env_files(c: &Container) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for path in &c.env_file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::EnvFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let vars = berth_config::env_file::parse_env_file(&text).map_err(|e| Error::EnvFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        out.extend(vars);
    }
    Ok(out)
}

/// /etc/hosts for a container: loopback; the containers of its network by
/// name and hostname (itself among them, at its own address); extra_hosts.
/// A container that is not on the bridge names itself at 127.0.1.1.
pub fn hosts_file(c: &Container, network: &[(IpAddr, Vec<String>)]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let listed = network.iter().any(|(_, names)| names.contains(&c.name));
    if !listed && let Some(h) = &c.hostname {
        s += &format!("127.0.1.1\t{h}\n");
    }
    for (ip, names) in network {
        s += &format!("{ip}\t{}\n", names.join(" "));
    }
    for (name, ip) in &c.extra_hosts {
        s += &format!("{ip}\t{name}\n");
    }
    s
}

/// /etc/resolv.conf for a container: its own dns options, else the host's.
pub fn resolv_conf(c: &Container, host: &str) -> String {
    if c.dns.is_empty() && c.dns_search.is_empty() {
        return host.to_string();
    }
    let mut s = String::new();
    for ip in &c.dns {
        s += &format!("nameserver {ip}\n");
    }
    if !c.dns_search.is_empty() {
        s += &format!("search {}\n", c.dns_search.join(" "));
    }
    s
}

/// Resolves a container. `host_resolv` is the host's /etc/resolv.conf;
/// `network` the /etc/hosts entries of its network.
pub fn resolve(
    c: &Container,
    image: &Image,
    dirs: &StateDirs,
    host_resolv: &str,
    network: &[(IpAddr, Vec<String>)],
) -> Result<Spec, Error> {
    let env_files = read_env_files(c)?;
    let run = dirs.run.join(&c.name);
    let layer = if c.read_only {
        run.clone()
    } else {
        dirs.containers.join(&c.name)
    };
    let upper = (layer.join("upper"), layer.join("work"));
    let mut mounts: Vec<UserMount> = Vec::new();
    for v in &c.volumes {
        let source = match &v.source {
            VolumeSource::Bind(p) => p.clone(),
            VolumeSource::Named(n) => dirs.volumes.join(n),
        };
        mounts.push(UserMount::Bind {
            source,
            target: v.target.clone(),
            read_only: v.read_only,
        });
    }
    for t in &c.tmpfs {
        mounts.push(UserMount::Tmpfs {
            target: t.target.clone(),
            size: t.size,
            mode: t.mode,
        });
    }
    let mut files = vec![
        (
            run.join("hosts"),
            PathBuf::from("/etc/hosts"),
            hosts_file(c, network),
        ),
        (
            run.join("resolv.conf"),
            PathBuf::from("/etc/resolv.conf"),
            resolv_conf(c, host_resolv),
        ),
    ];
    if let Some(h) = &c.hostname {
        files.push((
            run.join("hostname"),
            PathBuf::from("/etc/hostname"),
            format!("{h}\n"),
        ));
    }
    let user = c.user.clone().or_else(|| {
        image
            .config
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .and_then(|u| berth_config::parse_user(u).ok())
    });
    Ok(Spec {
        name: c.name.clone(),
        lowers: image.lowers.clone(),
        upper,
        read_only: c.read_only,
        rootfs: run.join(ROOTFS),
        argv: argv(c, image)?,
        env: env(c, image, &env_files),
        cwd: c
            .working_dir
            .clone()
            .or_else(|| {
                image
                    .config
                    .working_dir
                    .as_ref()
                    .filter(|w| !w.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("/")),
        user,
        own_netns: matches!(c.network_mode, NetworkMode::Bridge | NetworkMode::None),
        mounts,
        files,
    })
}

impl Spec {
    /// Mounts the overlay root at [`Spec::rootfs`] (nodev): in the child's
    /// mount namespace, or, for a container in a user namespace, in
    /// berth's (see [`super::userns`]).
    pub fn mount_overlay(&self) -> nix::Result<()> {
        nix::mount::mount(
            Some("overlay"),
            &self.rootfs,
            Some("overlay"),
            nix::mount::MsFlags::MS_NODEV,
            Some(self.overlay_options().as_str()),
        )
    }

    /// The overlay options for the root.
    pub fn overlay_options(&self) -> String {
        let lowers: Vec<String> = self.lowers.iter().map(|p| escape(p)).collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            escape(&self.upper.0),
            escape(&self.upper.1)
        )
    }
}

/// Escapes the characters overlayfs options treat specially.
fn escape(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Config;

    fn container(toml: &str) -> Container {
        let src = format!("version = 1\n[containers.c]\nimage = \"busybox\"\n{toml}");
        let m = berth_config::parse(&src, "t.toml").unwrap();
        m.containers["c"].clone()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> Image {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Image {
            reference: "busybox:latest".into(),
            lowers: vec!["/img/a".into(), "/img/b".into()],
            config: Config {
                entrypoint: entrypoint.map(v),
                cmd: cmd.map(v),
                env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()],
                working_dir: Some("/srv".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn argv_follows_docker() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        assert_eq!(argv(&container(""), &img).unwrap(), ["/entry", "default"]);
        assert_eq!(
            argv(&container("command = [\"x\"]"), &img).unwrap(),
            ["/entry", "x"]
        );
        // A manifest entrypoint drops the image's CMD.
        assert_eq!(
            argv(&container("entrypoint = [\"/e2\"]"), &img).unwrap(),
            ["/e2"]
        );
        let none = image(None, None);
        let e = argv(&container(""), &none).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no command: neither the manifest nor image busybox:latest gives one"
        );
    }

    #[test]
    fn environment_precedence() {
        let c = container("environment = { B = \"manifest\", C = \"x=y\" }");
        let env = env(
            &c,
            &image(None, Some(&["sh"])),
            &[("A".into(), "file".into())],
        );
        assert_eq!(
            env,
            ["A=file", "B=manifest", "C=x=y", "HOSTNAME=c", "PATH=/bin"]
        );
        let bare = Image {
            config: Config::default(),
            ..image(None, None)
        };
        let env = super::env(&container(""), &bare, &[]);
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
    }

    #[test]
    fn resolve_paths_mounts_and_files() {
        let c = container(
            "working_dir = \"/w\"\nvolumes = [\"data:/data\", \"/srv/x:/x:ro\"]\ntmpfs = [\"/run:size=1m\"]\nextra_hosts = [\"db:10.0.0.5\"]\ndns = [\"1.1.1.1\"]",
        );
        let s = resolve(
            &c,
            &image(None, Some(&["sh"])),
            &StateDirs::default(),
            "nameserver 10.0.2.3\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.cwd, Path::new("/w"));
        assert_eq!(s.rootfs, Path::new("/run/berth/containers/c/rootfs"));
        assert_eq!(
            s.upper,
            (
                "/var/lib/berth/containers/c/upper".into(),
                "/var/lib/berth/containers/c/work".into()
            )
        );
        assert!(!s.read_only);
        assert_eq!(
            s.mounts,
            [
                UserMount::Bind {
                    source: "/var/lib/berth/volumes/data".into(),
                    target: "/data".into(),
                    read_only: false
                },
                UserMount::Bind {
                    source: "/srv/x".into(),
                    target: "/x".into(),
                    read_only: true
                },
                UserMount::Tmpfs {
                    target: "/run".into(),
                    size: Some(1 << 20),
                    mode: None
                },
            ]
        );
        let hosts = &s.files[0];
        assert_eq!(hosts.1, Path::new("/etc/hosts"));
        assert!(hosts.2.contains("127.0.1.1\tc\n") && hosts.2.contains("10.0.0.5\tdb\n"));
        assert_eq!(s.files[1].2, "nameserver 1.1.1.1\n");
        assert_eq!(s.files[2].2, "c\n");
        assert!(s.own_netns);
    }

    #[test]
    fn overlay_options() {
        let mut s = resolve(
            &container(""),
            &image(None, Some(&["sh"])),
            &StateDirs::default(),
            "",
            &[],
        )
        .unwrap();
        assert_eq!(
            s.overlay_options(),
            "lowerdir=/img/a:/img/b,upperdir=/var/lib/berth/containers/c/upper,workdir=/var/lib/berth/containers/c/work"
        );
        s.lowers = vec!["/a:b,c".into(), "/d".into()];
        assert!(s.overlay_options().starts_with("lowerdir=/a\\:b\\,c:/d,"));
    }

    #[test]
    fn read_only_roots_get_a_throwaway_layer_on_run() {
        let c = container("read_only = true\ntmpfs = [\"/tmp\"]");
        let s = resolve(
            &c,
            &image(None, Some(&["sh"])),
            &StateDirs::default(),
            "",
            &[],
        )
        .unwrap();
        assert!(s.read_only);
        assert_eq!(s.upper.0, Path::new("/run/berth/containers/c/upper"));
    }

    #[test]
    fn host_network_keeps_the_host_namespace() {
        let c = container("network_mode = \"host\"");
        let s = resolve(
            &c,
            &image(None, Some(&["sh"])),
            &StateDirs::default(),
            "",
            &[],
        )
        .unwrap();
        assert!(!s.own_netns);
        assert!(!s.env.iter().any(|e| e.starts_with("HOSTNAME=")));
    }
}
